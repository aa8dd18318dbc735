"""Periodic housekeeping tasks, sent by ``imagegen beat``.

``imagegen.prune`` deletes finished jobs older than ``IMAGEGEN_PRUNE_OLDER_THAN_DAYS`` (and
their stored objects with ``IMAGEGEN_PRUNE_DELETE_OBJECTS=true``). Unset, it does nothing: the
schedule may always be installed and retention stays off by default. Each run works for at
most one schedule interval (capped at 15 minutes) and the next one continues.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from worker import retention
from worker.celery_app import app
from worker.settings import Settings, get_settings
from worker.storage import store_from_settings

log = logging.getLogger("imagegen.maintenance")

MAX_RUN_S = 900.0


def prune_plan(settings: Settings) -> retention.PrunePlan | None:
    """The scheduled prune the settings ask for, or None when retention is off."""
    if settings.prune_older_than_days is None:
        return None
    store = store_from_settings(settings) if settings.prune_delete_objects else None
    return retention.PrunePlan(
        older_than=timedelta(days=settings.prune_older_than_days),
        batch_size=settings.prune_batch_size,
        store=store,
        time_budget_s=min(settings.prune_interval_s, MAX_RUN_S),
    )


# not acks_late: a long run must not come back as a duplicate after the visibility timeout
@app.task(name="imagegen.prune", ignore_result=True, acks_late=False)
def prune() -> None:
    plan = prune_plan(get_settings())
    if plan is None:
        log.debug("prune_disabled")
        return
    retention.prune(plan)
