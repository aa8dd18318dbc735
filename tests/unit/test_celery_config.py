"""The Celery app configures itself once, whatever touches it first (issue 18).

Each case runs in a fresh interpreter: the app is configured on first use, once per process.
Before the fix, a process that made ``app.amqp`` before reading any setting (a producer
sending a task, the benchmark) re-entered the ``on_configure`` hook from its own
``conf.update`` (the update flushes the routes, which read the configuration still being
loaded) until Python's recursion limit; Celery logged the ``RecursionError`` and went on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Logs every record at WARNING and above (Celery logs a failing signal receiver at ERROR),
#: touches the app in the order given, then prints what it saw and what the app is set to.
SCRIPT = """
import json, logging, sys

records = []

class Keep(logging.Handler):
    def emit(self, record):
        kind = record.exc_info[0].__name__ if record.exc_info else ""
        records.append(f"{record.name}: {kind} {record.getMessage()[:200]}")

logging.getLogger().addHandler(Keep(logging.WARNING))
sys.setrecursionlimit(400)  # the old failure shows sooner; nothing sane nests that deep

from worker.broker import app as module
app = module.app
for step in sys.argv[1].split(","):
    if step == "amqp":
        app.amqp
    elif step == "router":
        app.amqp.router.route({}, "imagegen.transfer")
    elif step == "conf":
        app.conf.broker_url
    elif step == "reconfigure":
        module.reconfigure()
print(json.dumps({
    "records": records,
    "routes": app.conf.task_routes,
    "default_queue": app.conf.task_default_queue,
    "acks_late": app.conf.task_acks_late,
    "broker": app.conf.broker_url,
    "transfer_queue": app.amqp.router.route({}, "imagegen.transfer")["queue"].name,
    "beat": sorted(app.conf.beat_schedule),
}))
"""


@pytest.mark.parametrize(
    "order",
    [
        "amqp,conf",  # a producer's first send: the router before any setting was read
        "router",
        "conf,amqp",  # the worker and beat: the CLI reads the settings first
        "reconfigure,amqp,conf",  # the demo and the tests: settings applied again
        "amqp,reconfigure",
        "conf,reconfigure,router",
    ],
)
def test_configuration_is_loaded_once_without_errors(order: str, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "IMAGEGEN_BROKER_URL": "memory://",
        "IMAGEGEN_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, order],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["records"] == []
    assert seen["broker"] == "memory://"
    assert seen["default_queue"] == "imagegen"
    assert seen["transfer_queue"] == "imagegen.transfer"
    assert seen["acks_late"] is True
    assert seen["beat"] == ["dispatch", "prune", "reconcile", "webhook_sweep"]
