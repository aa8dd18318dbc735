"""pgbench's simple-update and select-only scripts in a loop from threads, for a machine
without pgbench (``bench.ceiling`` uses pgbench when it is installed).

The same statements on the same kind of table: 100,000 accounts, an UPDATE of a random
account's balance, a SELECT of it and an INSERT into a history table, in one transaction.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg

_ACCOUNTS = 100_000
_SETUP = [
    "CREATE TABLE loop_accounts (aid int PRIMARY KEY, abalance int NOT NULL DEFAULT 0)",
    f"INSERT INTO loop_accounts (aid) SELECT generate_series(1, {_ACCOUNTS})",
    "CREATE TABLE loop_history (aid int, delta int, mtime timestamp)",
]
_UPDATE = [
    "UPDATE loop_accounts SET abalance = abalance + %(d)s WHERE aid = %(a)s",
    "SELECT abalance FROM loop_accounts WHERE aid = %(a)s",
    "INSERT INTO loop_history (aid, delta, mtime) VALUES (%(a)s, %(d)s, now())",
]


def measure(url: str, clients: tuple[int, ...], seconds: int) -> dict[str, Any]:
    """Transactions per second like :func:`bench.ceiling.measure` (``tool``: ``loop``)."""
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as conn:
        for statement in _SETUP:
            conn.execute(statement)
    update = {n: _rate(libpq, n, seconds, write=True) for n in clients}
    best = max(update, key=lambda n: update[n])
    return {
        "tool": "statements in a loop",
        "simple_update_tps": update,
        "select_only_tps": _rate(libpq, best, seconds, write=False),
        "best_clients": best,
        "seconds": seconds,
        "scale": 1,
    }


def _rate(libpq: str, clients: int, seconds: int, *, write: bool) -> float:
    counts = [0] * clients
    deadline = time.monotonic() + seconds

    def loop(index: int) -> None:
        with psycopg.connect(libpq, autocommit=not write) as conn:
            while time.monotonic() < deadline:
                values = {"a": random.randint(1, _ACCOUNTS), "d": random.randint(-5000, 5000)}
                for statement in _UPDATE if write else _UPDATE[1:2]:
                    conn.execute(statement, values)
                if write:
                    conn.commit()
                counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds
