"""The job's steps: submit, poll once, transfer. Each is a guarded transition around one call out.

A step loads the row, checks it is in the state the step expects (not cancelled, not past its
deadline), does one external call, writes the outcome with a guarded update and says what comes
next. It never sleeps and never trusts that it runs exactly once: a duplicate or late delivery
finds the row already moved and does nothing. Celery tasks only carry out the returned
:class:`Next`.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import httpx

from models import Job
from worker.blobs.copier import DownloadLimits, copy_output
from worker.blobs.storage import ObjectStore, object_key
from worker.core.errors import (
    ImagegenError,
    ProviderError,
    RateLimited,
    StorageError,
    TransferError,
)
from worker.core.limits import Admission, Limits
from worker.core.retry import Retry, RetryPolicy, Stop
from worker.core.settings import Settings
from worker.core.states import UNSUCCESSFUL, JobStatus
from worker.db.engine import SessionFactory
from worker.provider.failures import failure_error
from worker.provider.wire import Prediction, PredictionState
from worker.store import fleet, steps, transitions
from worker.store import jobs as job_store
from worker.store.transitions import Claim
from worker.telemetry import metrics

log = logging.getLogger("imagegen.pipeline")

Clock = Callable[[], datetime]


class Provider(Protocol):
    """The two calls of the provider contract (the real client or an in-memory stand-in)."""

    def submit(self, body: dict[str, object]) -> Prediction: ...

    def get_result(self, prediction_id: str) -> Prediction: ...


@dataclass(frozen=True)
class Next:
    """The step to run next for the job, and after how many seconds."""

    step: Literal["submit", "poll", "transfer"]
    delay_s: float = 0.0


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        provider: Provider,
        store: ObjectStore,
        http: httpx.Client,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.provider = provider
        self.store = store
        self.http = http
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rng = rng or random.Random()
        self.policy = RetryPolicy(
            base_s=settings.retry_base_s,
            max_s=settings.retry_max_s,
            max_submit_attempts=settings.max_submit_attempts,
            max_poll_errors=settings.max_poll_errors,
            max_transfer_attempts=settings.max_transfer_attempts,
            ambiguous_submit=settings.ambiguous_submit,
        )
        self.limits = Limits.from_settings(settings)
        self.download_limits = DownloadLimits.from_settings(settings)

    def close(self) -> None:
        """Close the HTTP connections this pipeline holds."""
        self.http.close()
        close = getattr(self.provider, "close", None)
        if close is not None:
            close()

    # --- submit ---------------------------------------------------------------------------------

    def submit(self, job_id: uuid.UUID) -> Next | None:
        """queued -> submitting -> running (or back to queued, or failed)."""
        with self.sessions() as session:
            claim = steps.claim_for_submit(
                session, job_id=job_id, limits=self.limits, lease_s=self.settings.submit_lease_s
            )
        job = claim.job if isinstance(claim, Claim) else None
        if isinstance(claim, Admission):  # the fleet's limits say not now: the dispatcher
            reason = claim.refused.value if claim.refused else "unknown"  # sends it again
            log.debug("submit_deferred", extra={"job_id": str(job_id), "reason": reason})
            metrics.deferred(reason)
            return None
        if claim is None or job is None:
            return None  # not due, already moved on, or cancelled
        if self._past_deadline(job):
            self._expire(job_id, JobStatus.SUBMITTING)
            return None
        if claim.attempt > self.settings.max_submit_attempts:  # workers died mid-submit
            self._exhausted(job_id, JobStatus.SUBMITTING, "submit", claim.attempt - 1)
            return None
        try:
            prediction = self.provider.submit(job.request_fields())
        except ProviderError as error:
            self._submit_failed(claim, job, error)
            return None
        first_poll = first_poll_delay(self.settings, job.resolution)
        with self.sessions() as session:
            breaker_or_strikes = fleet.after_success_needed(session)
            moved = steps.mark_running(
                session,
                claim=claim,
                prediction_id=prediction.id,
                provider_status=prediction.raw_status,
                next_poll_at=self.clock() + timedelta(seconds=first_poll),
            )
        if breaker_or_strikes:  # the provider answered: close the breaker, end the 429 run
            with self.sessions() as session:
                fleet.submit_answered(session)
        if not moved:
            # cancelled (or the lease expired) while the call was out: the prediction runs on
            # at the provider but nothing will copy its outputs
            log.warning(
                "submit_outcome_dropped",
                extra={"job_id": str(job_id), "prediction_id": prediction.id},
            )
            return None
        log.info(
            "submitted",
            extra={"job_id": str(job_id), "prediction_id": prediction.id, "attempt": claim.attempt},
        )
        return Next("poll", first_poll)

    def _submit_failed(self, claim: Claim, job: Job, error: ProviderError) -> None:
        """Tell the fleet what the provider said, then fail the job or queue it again (the
        dispatcher sends it when it is due and the fleet may submit)."""
        decision = self.policy.decide("submit", error, claim.attempt, self.rng)
        log.warning(
            "submit_failed",
            extra={"job_id": str(job.id), "attempt": claim.attempt, "error": error.code},
        )
        not_before = self.clock() + timedelta(
            seconds=decision.delay_s if isinstance(decision, Retry) else 0
        )
        with self.sessions() as session:
            if error.fleet_wide:  # 401/403: every submission waits for an operator
                fleet.provider_refused_key(session, error)
                not_before = self.clock()
            elif isinstance(error, RateLimited):
                cooldown = fleet.rate_limited(session, self.limits, error, rng=self.rng)
                not_before = max(not_before, cooldown.cooldown_until or not_before)
            elif error.retryable and not error.refused:  # 5xx, timeouts: the breaker counts
                fleet.submit_failed(session, self.limits, error)
            else:  # a definite answer about this request: the provider is up
                fleet.submit_answered(session)
        with self.sessions() as session:
            if isinstance(decision, Stop):
                transitions.fail(
                    session,
                    job_id=job.id,
                    sources=[JobStatus.SUBMITTING],
                    claim=claim,
                    code=decision.code,
                    message=decision.message,
                    ambiguous=decision.ambiguous,
                )
                return
            steps.requeue_submit(
                session,
                claim=claim,
                reason=error.message,
                ambiguous=decision.ambiguous,
                not_before=not_before,
                refund_attempt=decision.refund,
            )

    # --- poll -----------------------------------------------------------------------------------

    def poll(self, job_id: uuid.UUID) -> Next | None:
        """Ask the provider once; re-queue, or move to transferring, or fail."""
        with self.sessions() as session:
            job = job_store.get_job(session, job_id)
            running = job is not None and job.status == JobStatus.RUNNING and job.prediction_id
            wait = fleet.take_poll_token(session, self.limits) if running else 0.0
        if job is None or not running or not job.prediction_id:
            return None
        # past its deadline a job is still asked once more: a prediction that is done is paid
        # for, and is stored; one still pending ends the job (``_still_running``)
        if wait > 0:  # the fleet polls at its rate: ask again when a token is there
            return Next("poll", wait * self.rng.uniform(1.0, 1.2))
        try:
            prediction = self.provider.get_result(job.prediction_id)
        except ProviderError as error:
            return self._poll_failed(job, error)
        if prediction.state is PredictionState.PENDING:
            if self._past_deadline(job):
                self._expire(job_id, JobStatus.RUNNING)
                return None
            return self._still_running(job, prediction.raw_status)
        if prediction.state is PredictionState.FAILED or not prediction.outputs:
            # failure_error turns a completed prediction without outputs into NoOutput
            self._end(job_id, JobStatus.RUNNING, failure_error(prediction))
            return None
        outputs = list(prediction.outputs)
        cap = self.settings.max_outputs
        with self.sessions() as session:
            moved = steps.mark_generated(
                session,
                job_id=job_id,
                outputs=outputs[:cap],
                provider_status=prediction.raw_status,
                nsfw=list(prediction.has_nsfw)[:cap],
                refused=len(outputs) - cap if len(outputs) > cap else 0,
            )
        if len(outputs) > cap:
            log.warning(
                "outputs_capped",
                extra={"job_id": str(job_id), "outputs": len(outputs), "kept": cap},
            )
        return Next("transfer") if moved else None

    def _still_running(self, job: Job, provider_status: str) -> Next | None:
        delay = self._poll_delay(job)
        with self.sessions() as session:
            recorded = steps.record_poll(
                session,
                job_id=job.id,
                provider_status=provider_status,
                next_poll_at=self.clock() + timedelta(seconds=delay),
            )
        return Next("poll", delay) if recorded else None

    def _poll_failed(self, job: Job, error: ProviderError) -> Next | None:
        decision = self.policy.decide("poll", error, job.poll_errors + 1, self.rng)
        if isinstance(decision, Retry) and self._past_deadline(job):
            # whether it is done is not known: a provider that is down is waited out for as long
            # as a finished prediction's output would live; any other error ends it now
            ttl = timedelta(seconds=self.settings.output_url_ttl_s)
            if not (decision.refund and self.clock() < job.deadline_at + ttl):
                self._expire(job.id, JobStatus.RUNNING)
                return None
        log.warning(
            "poll_failed",
            extra={
                "job_id": str(job.id),
                "error": error.code,
                "prediction_id": job.prediction_id,
                "poll_errors": job.poll_errors + 1,
            },
        )
        if isinstance(decision, Stop):
            self._end(
                job.id, JobStatus.RUNNING, error, code=decision.code, message=decision.message
            )
            return None
        delay = max(decision.delay_s, self._poll_delay(job))
        with self.sessions() as session:
            if error.fleet_wide:  # the key is refused: stop submitting, keep polling
                fleet.provider_refused_key(session, error)
            elif isinstance(error, RateLimited):
                fleet.polls_rate_limited(session, self.limits)
            recorded = steps.record_poll(
                session,
                job_id=job.id,
                error=error.message,
                counts=not decision.refund,
                provider_status=job.provider_status or "unknown",
                next_poll_at=self.clock() + timedelta(seconds=delay),
            )
        return Next("poll", delay) if recorded else None

    def _poll_delay(self, job: Job) -> float:
        elapsed = (self.clock() - job.submitted_at).total_seconds() if job.submitted_at else 0.0
        return next_poll_delay(self.settings, elapsed, self.rng)

    # --- transfer -------------------------------------------------------------------------------

    def transfer(self, job_id: uuid.UUID) -> Next | None:
        """Copy every output not yet stored, then transferring -> succeeded."""
        with self.sessions() as session:
            claim = steps.claim_for_transfer(
                session, job_id=job_id, lease_s=self.settings.transfer_lease_s
            )
        job = claim.job if claim else None
        if claim is None or job is None:
            return None
        # no deadline here: the outputs are generated and paid for, so they are copied for as
        # long as their URLs live (a storage outage: ``_storage_down``)
        if claim.attempt > self.settings.max_transfer_attempts:
            self._exhausted(job_id, JobStatus.TRANSFERRING, "transfer", claim.attempt - 1)
            return None
        todo = [(i, url) for i, url in enumerate(job.outputs or []) if i not in claim.stored]
        try:
            # the claim has just taken the lease: no need to renew it before the first copy;
            # the last copy's row is written with the success, in one transaction
            for n, (index, url) in enumerate(todo):
                self._copy_one(claim, job, index, url, renew=n > 0, last=n == len(todo) - 1)
        except TransferError as error:
            return self._transfer_failed(claim, job, error)
        if not todo:
            with self.sessions() as session:
                steps.mark_succeeded(session, claim=claim)
        return None

    def _copy_one(
        self, claim: Claim, job: Job, index: int, url: str, *, renew: bool, last: bool
    ) -> None:
        if renew:
            with self.sessions() as session:  # cancelled meanwhile: copy nothing more
                if not steps.renew_transfer_lease(
                    session, claim=claim, lease_s=self.settings.transfer_lease_s
                ):
                    raise _Abandoned()
        key = object_key(self.store.prefix, job.id, job.created_at, index)
        started = time.perf_counter()
        stored = copy_output(self.http, url, self.store, key, limits=self.download_limits)
        metrics.transfer(stored.bytes, time.perf_counter() - started)
        nsfw = job.nsfw[index] if job.nsfw and index < len(job.nsfw) else None
        with self.sessions() as session:
            # the renewal (or, after the last copy, the success) locks the row and checks the
            # lease first: a cancellation cannot slip in before the image row
            if last:
                kept = steps.mark_succeeded(session, claim=claim)
            else:
                kept = steps.renew_transfer_lease(
                    session, claim=claim, lease_s=self.settings.transfer_lease_s
                )
            if not kept:
                self._drop_if_ended(job.id, key)
                raise _Abandoned()
            job_store.record_image(
                session,
                values={
                    "job_id": job.id,
                    "idx": index,
                    "bucket": self.store.bucket,
                    "key": key,
                    "content_type": stored.content_type,
                    "bytes": stored.bytes,
                    "sha256": stored.sha256,
                    "width": stored.width,
                    "height": stored.height,
                    "source_url": url,
                    "nsfw": nsfw,
                },
            )
        log.info(
            "output_stored",
            extra={
                "job_id": str(job.id),
                "index": index,
                "prediction_id": job.prediction_id,
                "bytes": stored.bytes,
            },
        )

    def _drop_if_ended(self, job_id: uuid.UUID, key: str) -> None:
        """The job ended while this copy was in flight: remove what was just written (unless
        another worker took the transfer over and owns the same key now)."""
        with self.sessions() as session:
            job = job_store.get_job(session, job_id)
        if job is None or job.status in UNSUCCESSFUL:
            self.store.delete([key])

    def discard(self, job_id: uuid.UUID) -> None:
        """Delete the stored outputs and image rows of a job that ended without success: the
        objects first (every index the job could have stored, whether or not its row was
        written), then the rows with an event saying so; a discard that fails or never runs
        is sent again by the reconciler until that event is there."""
        with self.sessions() as session:
            job = job_store.get_job(session, job_id)
        if job is None or job.status not in UNSUCCESSFUL:
            return
        self.store.delete(
            [
                object_key(self.store.prefix, job.id, job.created_at, index)
                for index in range(len(job.outputs or []))
            ]
        )
        with self.sessions() as session:
            if not job_store.discard_images(session, job_id=job_id):
                return
        log.info("outputs_discarded", extra={"job_id": str(job_id), "status": job.status})

    def _transfer_failed(self, claim: Claim, job: Job, error: TransferError) -> Next | None:
        if isinstance(error, _Abandoned):
            return None
        if isinstance(error, StorageError):
            return self._storage_down(claim, job, error)
        decision = self.policy.decide("transfer", error, job.transfer_attempts, self.rng)
        log.warning(
            "transfer_failed",
            extra={
                "job_id": str(job.id),
                "error": error.code,
                "prediction_id": job.prediction_id,
                "attempt": job.transfer_attempts,
            },
        )
        with self.sessions() as session:
            if isinstance(decision, Stop):
                transitions.fail(
                    session,
                    job_id=job.id,
                    sources=[JobStatus.TRANSFERRING],
                    claim=claim,
                    code=decision.code,
                    message=decision.message,
                )
                return None
            assert isinstance(decision, Retry)
            moved = steps.release_transfer(
                session,
                claim=claim,
                reason=error.message,
                not_before=self.clock() + timedelta(seconds=decision.delay_s),
            )
        return Next("transfer", decision.delay_s) if moved else None

    def _storage_down(self, claim: Claim, job: Job, error: StorageError) -> Next | None:
        """Storage, not the output, failed: pause submissions fleet-wide (nothing more is
        generated that could not be kept) and try this copy again, without spending an attempt,
        for as long as the output URL lives; waits grow with the outage (a tenth of it)."""
        waited_s = (self.clock() - (job.generated_at or self.clock())).total_seconds()
        ttl_s = self.settings.output_url_ttl_s
        log.warning(
            "storage_unavailable",
            extra={"job_id": str(job.id), "error": error.message, "waited_s": round(waited_s)},
        )
        with self.sessions() as session:
            if waited_s >= ttl_s:
                transitions.fail(
                    session,
                    job_id=job.id,
                    sources=[JobStatus.TRANSFERRING],
                    claim=claim,
                    code=error.code,
                    message=f"{error.message} (storage stayed unavailable for {ttl_s:g} s, "
                    "the output URL's lifetime: IMAGEGEN_OUTPUT_URL_TTL_S)",
                )
                return None
            fleet.storage_unavailable(session, reason=f"storage_error: {error.message}")
            delay = min(self.settings.retry_max_s, max(self.settings.retry_base_s, waited_s / 10))
            delay *= self.rng.uniform(1.0, 1.2)
            moved = steps.release_transfer(
                session,
                claim=claim,
                reason=error.message,
                not_before=self.clock() + timedelta(seconds=delay),
                refund=True,
            )
        return Next("transfer", delay) if moved else None

    # --- endings --------------------------------------------------------------------------------

    def _past_deadline(self, job: Job) -> bool:
        return self.clock() >= job.deadline_at

    def _expire(self, job_id: uuid.UUID, status: JobStatus) -> None:
        with self.sessions() as session:
            transitions.fail(
                session,
                job_id=job_id,
                sources=[status],
                code="deadline_exceeded",
                message="the job did not finish before its deadline",
            )

    def _exhausted(self, job_id: uuid.UUID, status: JobStatus, step: str, tries: int) -> None:
        """A step whose worker keeps dying (a poison job) ends instead of looping."""
        with self.sessions() as session:
            transitions.fail(
                session,
                job_id=job_id,
                sources=[status],
                code="retries_exhausted",
                message=f"gave up after {tries} {step} attempts whose worker was lost",
            )

    def redelivered_poll(self, job_id: uuid.UUID) -> bool:
        """Count a poll whose worker was lost; False (and the job failed) when it is poison."""
        limit = self.settings.max_poll_errors
        with self.sessions() as session:
            within = steps.count_redelivery(session, job_id=job_id, limit=limit)
        if not within:
            self._exhausted(job_id, JobStatus.RUNNING, "poll", limit)
        return within

    def _end(
        self,
        job_id: uuid.UUID,
        status: JobStatus,
        error: ImagegenError,
        *,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        with self.sessions() as session:
            transitions.fail(
                session,
                job_id=job_id,
                sources=[status],
                code=code or error.code,
                message=message or error.message,
            )
        log.info("job_failed", extra={"job_id": str(job_id), "error": code or error.code})


#: When the first poll is worth making, relative to a 1080p picture: the contract's generation
#: times are 15-60 s at 1080p and longer at higher resolutions (about 20-80 s, 30-120 s).
FIRST_POLL_SCALE = {"1080p": 1.0, "2K": 4 / 3, "4K": 2.0}


def first_poll_delay(settings: Settings, resolution: str) -> float:
    """Seconds from the submit to the first poll: about when the fastest prediction of that
    resolution can be done (polls before then only cost requests)."""
    return settings.poll_initial_delay_s * FIRST_POLL_SCALE.get(resolution, 1.0)


def next_poll_delay(settings: Settings, elapsed_s: float, rng: random.Random) -> float:
    """Seconds until the next poll of a prediction submitted ``elapsed_s`` ago.

    A fixed part plus a fraction of the time already spent, capped: a prediction that finishes
    between two polls is seen at most ``poll_interval_s + poll_elapsed_fraction x its
    generation time`` late, with few polls for the long ones. The jitter (down to 90%) only
    shortens the wait, so the bound holds."""
    interval = settings.poll_interval_s + settings.poll_elapsed_fraction * max(elapsed_s, 0.0)
    return min(interval, settings.poll_max_interval_s) * rng.uniform(0.9, 1.0)


class _Abandoned(TransferError):
    """The job left the transferring state (cancelled) while its outputs were being copied."""
