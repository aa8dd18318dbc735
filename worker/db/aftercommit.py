"""Run something once a session's outermost transaction has committed (never on rollback).

SQLAlchemy also fires ``after_commit`` when a savepoint (``begin_nested``) is released, and
``after_rollback`` when one is rolled back; acting then would nudge the broker about rows that
are not committed yet, or that never will be. Callbacks are kept per session and run or
dropped when the outermost transaction ends. A failing callback is logged, never raised: the
commit has happened, and whatever it was meant to send is found again from the rows.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("imagegen.aftercommit")
_CALLBACKS = "imagegen_after_commit"
_LISTENING = "imagegen_after_commit_listening"


def call_after_commit(session: Session, callback: Callable[..., object], *args: Any) -> None:
    """Call ``callback(*args)`` after the current outermost transaction of ``session``
    commits; drop it if that transaction rolls back."""
    if not session.info.get(_LISTENING):
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_rollback", _rolled_back)
        session.info[_LISTENING] = True
    session.info.setdefault(_CALLBACKS, []).append(functools.partial(callback, *args))


def _committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the outer transaction may still roll back
    for callback in session.info.pop(_CALLBACKS, []):
        try:
            callback()
        except Exception:
            log.exception("after_commit_failed")


def _rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_CALLBACKS, None)
