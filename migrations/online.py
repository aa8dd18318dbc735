"""Index changes that do not stop the fleet: ``CONCURRENTLY`` on Postgres.

A plain ``CREATE INDEX`` on ``jobs`` holds a lock that blocks every insert and status change
until the build ends: minutes on a table of millions of jobs, with every worker and producer
waiting. On Postgres these helpers build and drop indexes ``CONCURRENTLY``, which cannot run
inside a transaction: each runs in its own autocommit block, so a migration using them must
hold nothing else (a schema change before them would be committed apart from its version
stamp). They can run again after an interruption: an interrupted concurrent build leaves an
invalid index behind, which the next run drops before building it again. Elsewhere (SQLite)
they are the plain operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy.sql.elements import TextClause


def create_index(
    name: str,
    table: str,
    columns: Sequence[str],
    *,
    where: TextClause | None = None,
    **postgresql: Any,
) -> None:
    """``postgresql``: further ``postgresql_*`` options (``postgresql_using="gin"``), which
    other databases ignore."""
    if not _postgres():
        op.create_index(name, table, list(columns), sqlite_where=where)
        return
    with op.get_context().autocommit_block():
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')  # left by an interrupted run
        op.create_index(
            name,
            table,
            list(columns),
            postgresql_where=where,
            postgresql_concurrently=True,
            **postgresql,
        )


def drop_index(name: str, table: str) -> None:
    if not _postgres():
        op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
