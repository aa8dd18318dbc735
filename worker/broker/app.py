"""The Celery application, configured lazily from the settings on first use.

Settings that matter for reliability: late acks with one message prefetched at a time, tasks
rejected (redelivered) when a worker dies mid-task, and a broker visibility timeout far above
any countdown the pipeline uses (poll countdowns are seconds; the truth lives in the row).
"""

from __future__ import annotations

from typing import Any

import celery.apps.worker
from celery import Celery
from celery.signals import setup_logging
from celery.utils.nodenames import default_nodename, host_format

from worker.core.settings import STEPS_QUEUE, TRANSFER_QUEUE, Settings, get_settings
from worker.telemetry.logs import say_json

#: Tasks that copy bytes to or from storage: their own queue, so that a burst of large copies
#: never delays the polls and dispatch cycles of the jobs still moving (and so that copies can
#: have workers of their own: ``imagegen worker --queues imagegen.transfer``).
TRANSFER_TASKS = ("imagegen.transfer", "imagegen.discard")

app = Celery("imagegen", include=["worker.broker.tasks"])


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.effective_broker_url,
        "broker_transport_options": _transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "task_default_queue": STEPS_QUEUE,
        "task_routes": {name: {"queue": TRANSFER_QUEUE} for name in TRANSFER_TASKS},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_max_retries": None,
        # reconnects after a broker outage instead of stopping (see the module)
        "worker_consumer": "worker.broker.consumer:Consumer",
        "enable_utc": True,
        "beat_schedule": beat_schedule(settings),
    }


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic tasks sent by ``imagegen beat`` (one beat process per fleet is enough; extra
    ones are harmless: reconciler passes take a lock)."""
    return {
        # queued jobs into the broker at the pace of the fleet limits
        "dispatch": {
            "task": "imagegen.dispatch",
            "schedule": settings.dispatch_interval_s,
            "options": {"expires": max(settings.dispatch_interval_s, 1.0)},
        },
        "reconcile": {
            "task": "imagegen.reconcile",
            "schedule": settings.reconcile_interval_s,
            "options": {"expires": settings.reconcile_interval_s},
        },
        # does nothing while IMAGEGEN_PRUNE_OLDER_THAN_DAYS is unset
        "prune": {
            "task": "imagegen.prune",
            "schedule": settings.prune_interval_s,
            "options": {"expires": settings.prune_interval_s},
        },
        "webhook_sweep": {
            "task": "imagegen.webhook_sweep",
            "schedule": settings.reconcile_interval_s,
            "options": {"expires": settings.reconcile_interval_s},
        },
    }


def _transport_options(settings: Settings) -> dict[str, Any]:
    url = settings.effective_broker_url
    if url.startswith("filesystem"):  # embedded mode across processes: a folder as the broker
        folder = (settings.data_dir / "broker").resolve()
        for sub in ("out", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "out"),
            "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "control_folder": str(folder / "control"),
        }
    if url.startswith(("redis", "rediss")):
        return {"visibility_timeout": settings.visibility_timeout_s}
    return {}


def _current_config() -> dict[str, Any]:
    return celery_config(get_settings())


# Built from the settings when Celery first reads one (not at import), as a layer of defaults:
# Celery merges it while it loads the configuration, with no hook that runs mid-load. (An
# ``on_configure`` receiver calling ``conf.update`` re-entered the loading when ``app.amqp``
# existed already: the update flushes its routes, which read the configuration still pending,
# which sends ``on_configure`` again, down to a ``RecursionError`` Celery logged and ignored.)
app.add_defaults(_current_config)


def reconfigure() -> None:
    """Apply the current settings again (after the environment changed: tests, the demo)."""
    app.conf.update(_current_config())
    app._pool = None  # pooled connections and producers still point at the old broker
    if "amqp" in vars(app):  # only an existing one: there is nothing to reset in a new one
        app.amqp._producer_pool = None


def keep_celery_logging_ours(*, json_lines: bool) -> None:
    """Switch Celery's own logging setup off (a receiver of its ``setup_logging`` signal), so
    worker and beat lines go through the process's handler (``worker.telemetry.logs``); with
    JSON lines, the few messages the worker writes straight to the terminal from its signal
    handlers ("Warm shutdown") are written as JSON lines too."""
    setup_logging.connect(_celery_logging_is_ours, weak=False, dispatch_uid="imagegen.logs")
    if json_lines and hasattr(celery.apps.worker, "safe_say"):
        celery.apps.worker.safe_say = say_json


def _celery_logging_is_ours(**_: Any) -> None:
    """Receiver of Celery's ``setup_logging``: its presence stops Celery's own setup."""


def node_name(name: str) -> str:
    """The node name a worker started with ``--hostname name`` answers to, as Celery forms it
    (``imagegen-web1-%i`` becomes ``celery@imagegen-web1-0``)."""
    return host_format(default_nodename(name))


def answers_ping(name: str, *, timeout_s: float) -> bool:
    """Whether the worker ``name`` answers a remote-control ping within ``timeout_s``: its
    consumer is connected to the broker and its main loop is serving."""
    node = node_name(name)
    replies = app.control.ping(destination=[node], timeout=timeout_s)
    return any(node in reply for reply in replies or [])
