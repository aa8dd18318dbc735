"""Fleet-wide state in the database: the submit and poll buckets, pause, cool-down, breaker.

Every worker on every host shares one row per bucket (``fleet_controls``). A submission claim
locks the ``submit`` row, counts the predictions in flight and takes a token in the same
transaction that moves the job to ``submitting``, so the limits hold across the whole fleet
however many processes claim at once. What the provider answers feeds back here: a 429 starts
a shared cool-down and halves the rate, 401/403 pause submissions, runs of 5xx or timeouts open
the circuit breaker. ``read_fleet_state`` is what ``imagegen status``, the API and metrics show;
operators pause and resume through ``service.operator``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import BUCKETS, FleetControl, Job
from models.base import utcnow
from worker.core import limits as rules
from worker.core.errors import AuthenticationFailed, ProviderError
from worker.core.limits import Admission, Breaker, Bucket, Limits
from worker.core.settings import get_settings
from worker.core.states import IN_FLIGHT
from worker.core.timespec import iso
from worker.db.engine import session_scope
from worker.telemetry import metrics

log = logging.getLogger("imagegen.fleet")

SUBMIT, POLL = BUCKETS
_BUCKET_FIELDS = tuple(field.name for field in fields(Bucket))
#: A fresh bucket is full (tokens are capped at the configured burst when read).
FULL = 1e9
#: How the provider client's messages about an answer begin (a pause reason says it once).
_ANSWERED = "provider answered"


# --- rows ---------------------------------------------------------------------------------------


def _ensure_rows(session: Session) -> None:
    """Create the bucket rows if they are missing (a fresh or emptied table)."""
    now = utcnow()
    rows = [
        {
            "name": name,
            "tokens": FULL,
            "tokens_at": now,
            "rate_factor": 1.0,
            "strikes": 0,
            "paused": False,
            "breaker": "closed",
            "breaker_failures": 0,
            "updated_at": now,
        }
        for name in BUCKETS
    ]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(FleetControl).values(rows).on_conflict_do_nothing())


def _row(session: Session, name: str) -> FleetControl:
    """The bucket's row, unlocked (what operators and the dispatcher read)."""
    for _ in range(2):
        row = session.get(FleetControl, name, populate_existing=True)
        if row is not None:
            return row
        _ensure_rows(session)
    raise RuntimeError(f"fleet control row {name!r} is missing")  # pragma: no cover


def _locked(session: Session, name: str) -> tuple[FleetControl, datetime]:
    """Lock the bucket's row until the transaction ends and read it, in one statement, with
    the database's clock at that moment: every host measures the buckets with the same clock
    (host clocks drift apart; one ahead of the others would refill extra tokens). An UPDATE
    locks on every backend, SQLite included, before the row is read."""
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = (
        update(FleetControl)
        .where(FleetControl.name == name)
        .values(updated_at=func.clock_timestamp() if postgres else utcnow())
        .returning(FleetControl)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    for _ in range(2):
        row = session.scalars(statement).first()
        if row is not None:
            return row, row.updated_at
        _ensure_rows(session)
    raise RuntimeError(f"fleet control row {name!r} is missing")  # pragma: no cover


def _bucket(row: FleetControl) -> Bucket:
    values = {name: getattr(row, name) for name in _BUCKET_FIELDS}
    values["breaker"] = Breaker(values["breaker"])
    return Bucket(**values)


def _store(session: Session, name: str, before: Bucket, after: Bucket) -> None:
    changed = {key: value for key, value in asdict(after).items() if getattr(before, key) != value}
    if not changed:
        return
    if "breaker" in changed:
        changed["breaker"] = after.breaker.value
    session.execute(
        update(FleetControl).where(FleetControl.name == name).values(updated_at=utcnow(), **changed)
    )


def current_limits() -> Limits:
    return Limits.from_settings(get_settings())


def count_in_flight(session: Session, cap: int) -> int:
    """Jobs submitting or running, counted up to ``cap`` (enough to compare with the cap)."""
    inner = select(Job.id).where(Job.status.in_(IN_FLIGHT)).limit(cap).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)


# --- the submission gate ------------------------------------------------------------------------


def admit_submission(session: Session, *, priority: str, limits: Limits) -> Admission:
    """Lock the submit bucket and decide whether one submission of ``priority`` may go now.

    The lock is held until the caller's transaction ends: it moves the job to ``submitting``
    and then calls :func:`take` (or writes nothing to the bucket when the job moved on)."""
    row, now = _locked(session, SUBMIT)
    in_flight = count_in_flight(session, limits.max_in_flight)
    return rules.admit(limits, _bucket(row), now, priority=priority, in_flight=in_flight)


def take(session: Session, admission: Admission) -> None:
    """Record an admitted submission's token (and a probe's lease) in the submit bucket."""
    values = asdict(admission.bucket)
    values["breaker"] = admission.bucket.breaker.value
    session.execute(
        update(FleetControl)
        .where(FleetControl.name == SUBMIT)
        .values(updated_at=utcnow(), **values)
    )
    if admission.probe:
        log.info("breaker_probe")


def dispatcher_ran(session: Session) -> None:
    """Record that a dispatch cycle ran (``status`` warns when none did for a while)."""
    session.execute(
        update(FleetControl).where(FleetControl.name == SUBMIT).values(dispatcher_seen_at=utcnow())
    )


def read_bucket(session: Session, name: str = SUBMIT) -> Bucket:
    """The bucket's state without locking it (the dispatcher's view)."""
    return _bucket(_row(session, name))


class _Grant:
    """Poll tokens this process took from the fleet's bucket in a block and has not used yet.

    Taking a block (a tenth of a second's worth) instead of one token per poll spares most
    polls a locked row; unused tokens lapse after ``GRANT_S``, so over any window the fleet
    polls at most ``rate x (window + GRANT_S) + burst`` times."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left = 0
        self._until = 0.0

    def take(self) -> bool:
        with self._lock:
            if self._left > 0 and time.monotonic() < self._until:
                self._left -= 1
                return True
            return False

    def keep(self, tokens: int) -> None:
        with self._lock:
            self._left, self._until = tokens, time.monotonic() + GRANT_S


#: How long a block of poll tokens stays usable (and how many seconds' worth one block holds).
GRANT_S = 0.1
_poll_grant = _Grant()


def take_poll_token(session: Session, limits: Limits) -> float:
    """Take a token from the fleet's poll bucket: 0, or the seconds to wait for one."""
    if limits.poll_rate <= 0 or _poll_grant.take():
        return 0.0
    row, now = _locked(session, POLL)
    before = _bucket(row)
    rate = rules.poll_rate(limits, before, now)
    block = max(1, min(limits.poll_burst, int(rate * GRANT_S)))
    after, taken, wait = rules.take_up_to(before, now, rate, limits.poll_burst, block)
    _store(session, POLL, before, after)
    if taken > 1:
        _poll_grant.keep(taken - 1)
    return wait


# --- what the provider said (each in the caller's short transaction) ----------------------------


def _update(
    session: Session, name: str, change: Callable[[Bucket, datetime], Bucket]
) -> tuple[Bucket, Bucket]:
    """Apply ``change(bucket, now)`` to one bucket under its lock; (before, after)."""
    row, now = _locked(session, name)
    before = _bucket(row)
    after = change(before, now)
    _store(session, name, before, after)
    return before, after


def after_success_needed(session: Session) -> bool:
    """Whether an accepted submission has anything to change (a breaker to close, a run of
    429s to end): a plain read, so the common case writes nothing."""
    return rules.needs_success_write(read_bucket(session))


def submit_answered(session: Session) -> None:
    """The provider answered a submission (accepted it, or refused the request itself): it is
    up, so the breaker closes and the run of 429s ends. Writes only when that changes
    anything, which it rarely does."""
    if not rules.needs_success_write(read_bucket(session)):
        return
    before, after = _update(session, SUBMIT, lambda bucket, _now: rules.submit_succeeded(bucket))
    if before.breaker is not Breaker.CLOSED:
        log.info("breaker_closed")
        metrics.set_breaker(after.breaker.value)


def rate_limited(
    session: Session, limits: Limits, error: ProviderError, *, rng: random.Random | None = None
) -> Bucket:
    """A 429 on a submission: the whole fleet cools down (``Retry-After`` or exponential) and
    slows down."""
    _, after = _update(
        session,
        SUBMIT,
        lambda state, now: rules.rate_limited(limits, state, now, error.retry_after_s, rng),
    )
    log.warning(
        "fleet_cooldown",
        extra={
            "until": str(after.cooldown_until),
            "strikes": after.strikes,
            "rate_factor": round(after.rate_factor, 3),
        },
    )
    return after


def polls_rate_limited(session: Session, limits: Limits) -> Bucket:
    """A 429 on a poll: the fleet polls slower for a while (that job waits its backoff)."""
    _, after = _update(session, POLL, lambda state, now: rules.slowed_down(limits, state, now))
    log.warning("fleet_polls_slowed", extra={"rate_factor": round(after.rate_factor, 3)})
    return after


def submit_failed(session: Session, limits: Limits, error: ProviderError) -> Bucket:
    """A submission ended in a 5xx, a timeout or an unreachable provider."""
    reason = f"{error.code}: {error.message}"
    before, after = _update(
        session, SUBMIT, lambda state, now: rules.submit_failed(limits, state, now, reason)
    )
    if after.breaker_opened_at != before.breaker_opened_at:  # opened, or a probe failed
        log.warning("breaker_open", extra={"failures": after.breaker_failures, "reason": reason})
        metrics.set_breaker(Breaker.OPEN.value)
    return after


def pause_code_of(error: ProviderError) -> str:
    """``auth`` for a rejected key (401), else ``balance`` or ``permission`` (403)."""
    if isinstance(error, AuthenticationFailed):
        return "auth"
    return "balance" if "balance" in error.message.lower() else "permission"


def provider_refused_key(session: Session, error: ProviderError) -> bool:
    """401/403: pause every submission until an operator resumes (jobs stay queued)."""
    code = pause_code_of(error)
    hint = {
        "auth": "fix GPTPROTO_API_KEY",
        "balance": "top up the account",
        "permission": "check the key's permissions",
    }[code]
    reason = f"{refusal_text(error)}; {hint}, then run `imagegen resume`"
    return set_paused(session, reason=reason, by="provider", code=code)


# --- storage ------------------------------------------------------------------------------------

#: The pause code of a storage outage: set by a failed copy or preflight, lifted by a probe.
STORAGE_PAUSE = "storage"


def storage_unavailable(session: Session, *, reason: str) -> bool:
    """Outputs cannot be stored: pause submissions fleet-wide (nothing new is generated that
    could not be kept); False if submissions already were paused."""
    return set_paused(session, reason=reason, by="storage", code=STORAGE_PAUSE)


def storage_paused(session: Session) -> bool:
    """True while a storage outage pauses submissions."""
    row = _row(session, SUBMIT)
    return bool(row.paused and row.pause_code == STORAGE_PAUSE)


def storage_recovered(session: Session) -> bool:
    """A probe write succeeded: lift a storage pause (and only that kind)."""
    before = _bucket(_locked(session, SUBMIT)[0])
    if not before.paused or before.pause_code != STORAGE_PAUSE:
        return False
    return clear_pause(session, by="storage probe")


def refusal_text(error: ProviderError) -> str:
    """What the provider said, with one "provider answered" prefix: the client's messages
    already start with it ("provider answered HTTP 403 Forbidden: ..."), a bare one gets it."""
    if error.message.startswith(_ANSWERED):
        return error.message
    status = f"HTTP {error.status_code}: " if error.status_code else ""
    return f"{_ANSWERED} {status}{error.message}"


# --- operators ----------------------------------------------------------------------------------


def set_paused(session: Session, *, reason: str, by: str, code: str = "manual") -> bool:
    """Pause every submission fleet-wide (polls and transfers go on); False if it already
    was (the first reason stays: a 401 followed by many more)."""
    before = _bucket(_locked(session, SUBMIT)[0])
    if before.paused:
        return False
    session.execute(
        update(FleetControl)
        .where(FleetControl.name == SUBMIT)
        .values(
            paused=True,
            pause_code=code,
            pause_reason=reason,
            paused_at=utcnow(),
            paused_by=by[:200],
            updated_at=utcnow(),
        )
    )
    log.warning("submissions_paused", extra={"code": code, "by": by, "reason": reason})
    metrics.set_paused(True)
    return True


def clear_pause(session: Session, *, by: str) -> bool:
    """End a pause (and a cool-down); False if submissions were not paused."""
    before = _bucket(_locked(session, SUBMIT)[0])
    session.execute(
        update(FleetControl)
        .where(FleetControl.name == SUBMIT)
        .values(
            paused=False,
            pause_code=None,
            pause_reason=None,
            paused_at=None,
            paused_by=None,
            cooldown_until=None,
            updated_at=utcnow(),
        )
    )
    if before.paused:
        log.warning("submissions_resumed", extra={"by": by, "was": before.pause_code})
        metrics.set_paused(False)
    return before.paused


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetState:
    """What operators see: pause, breaker, cool-down, the current rate and work in flight."""

    paused: bool | None
    breaker: str
    reason: str | None = None
    pause_code: str | None = None
    paused_at: datetime | None = None
    paused_by: str | None = None
    breaker_reason: str | None = None
    cooldown_until: datetime | None = None
    submit_rate: float | None = None
    in_flight: int | None = None
    max_in_flight: int | None = None
    #: Seconds since the last dispatch cycle (None: never); see ``dispatcher_stale``.
    dispatcher_age_s: float | None = None
    #: No dispatch cycle for a while: queued jobs only move when ``imagegen beat`` runs.
    dispatcher_stale: bool = False

    def as_dict(self) -> dict[str, Any]:
        view = asdict(self)
        for key in ("paused_at", "cooldown_until"):
            view[key] = iso(view[key])
        return view


def read_fleet_state(session: Session | None = None) -> FleetState:
    """The current pause, breaker, cool-down and rate of the whole fleet."""
    if session is None:
        with session_scope() as own:
            return read_fleet_state(own)
    limits = current_limits()
    now = utcnow()
    row = _row(session, SUBMIT)
    bucket = _bucket(row)
    breaker = rules.breaker_state(limits, bucket, now)
    cooldown = (
        bucket.cooldown_until if bucket.cooldown_until and bucket.cooldown_until > now else None
    )
    age = (now - row.dispatcher_seen_at).total_seconds() if row.dispatcher_seen_at else None
    stale_after = max(10 * get_settings().dispatch_interval_s, 30.0)
    return FleetState(
        dispatcher_age_s=None if age is None else round(max(age, 0.0), 1),
        dispatcher_stale=age is None or age > stale_after,
        paused=bucket.paused,
        breaker=breaker.value,
        reason=bucket.pause_reason,
        pause_code=bucket.pause_code,
        paused_at=row.paused_at,
        paused_by=row.paused_by,
        breaker_reason=bucket.breaker_reason if breaker is not Breaker.CLOSED else None,
        cooldown_until=cooldown,
        submit_rate=rules.submit_rate(limits, bucket, now),
        in_flight=count_in_flight(session, limits.max_in_flight * 10),
        max_in_flight=limits.max_in_flight,
    )
