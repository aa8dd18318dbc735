"""How a simulator run behaves: keys, latencies, delays, fault profile, seed.

The config is immutable; changing it at run time (``POST /_sim/config``) builds a new one with
``updated()`` and swaps it in whole, so a request never sees half an update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.faults import check_profile, parse_profile
from simulator.images import RESOLUTIONS, normalize_resolution

_WILDCARDS = {"*", "all"}


class LatencyRange(NamedTuple):
    """Generation time in seconds, drawn uniformly from [min_s, max_s]."""

    min_s: float
    max_s: float


DEFAULT_LATENCY = {
    "1080p": LatencyRange(1.0, 2.0),
    "2K": LatencyRange(1.5, 3.0),
    "4K": LatencyRange(2.0, 4.0),
}


class SimulatorConfig(BaseModel):
    """Everything a simulator run can be told; durations in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Accepted keys; empty means any key starting with ``sk-``.
    api_keys: frozenset[str] = frozenset()
    #: Keys refused even when they would otherwise be accepted (revocation at run time).
    revoked_keys: frozenset[str] = frozenset()
    latency: dict[str, LatencyRange] = Field(default_factory=lambda: dict(DEFAULT_LATENCY))
    #: Time a prediction stays ``created`` before it is ``processing``.
    queue_s: float = Field(default=0.2, ge=0)
    submit_delay_s: float = Field(default=0.0, ge=0)
    poll_delay_s: float = Field(default=0.0, ge=0)
    #: How long a ``ghost_slow`` submit takes to answer; longer than a client's read timeout.
    ghost_delay_s: float = Field(default=30.0, ge=0)
    slow_output_bytes_per_s: int = Field(default=256 * 1024, gt=0)
    #: Base of output URLs, e.g. another host name; None means the server's own base URL.
    output_base_url: str | None = None
    output_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    #: Fault name -> probability per submit.
    profile: dict[str, float] = Field(default_factory=dict)
    seed: int = 0
    #: Incompressible pictures of realistic size (10-25 MB at 4K), for benchmarks.
    noise: bool = False
    cache_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    #: The account has no credit left: every submit is refused with 403 (polls still work).
    balance_exhausted: bool = False
    #: The query service is down: every poll is answered with this 5xx status (submits and
    #: downloads still work); set and cleared at run time (``POST /_sim/config``).
    poll_outage_status: int | None = Field(default=None, ge=500, le=599)
    #: Account concurrency limit: predictions in flight (created or processing); None: none.
    max_concurrency: int | None = Field(default=None, ge=1)
    #: Over the concurrency limit: wait in ``created`` for a free slot, or answer 429.
    over_concurrency: Literal["queue", "reject"] = "queue"
    #: Account submit rate limit (submits per second, token bucket); None: none.
    submit_rate: float | None = Field(default=None, gt=0)
    submit_burst: int = Field(default=1, ge=1)
    #: Whether a rate-limit 429 says when to come back (``Retry-After``).
    rate_limit_retry_after: bool = True
    #: Request log entries kept (the newest); counts in /_sim/stats stay exact. Read at start.
    log_max_entries: int = Field(default=200_000, gt=0)

    @field_validator("latency")
    @classmethod
    def _latency_complete(cls, value: dict[str, LatencyRange]) -> dict[str, LatencyRange]:
        merged = dict(DEFAULT_LATENCY)
        for resolution, span in value.items():
            merged[_resolution(resolution)] = _checked_range(span)
        return merged

    @field_validator("profile")
    @classmethod
    def _profile_known(cls, value: dict[str, float]) -> dict[str, float]:
        return check_profile(value)

    @field_validator("output_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    def accepts_key(self, key: str | None) -> bool:
        """Whether a request carrying ``key`` is authenticated."""
        if not key or key in self.revoked_keys:
            return False
        if self.api_keys:
            return key in self.api_keys
        return key.startswith("sk-")

    def updated(self, changes: dict[str, Any]) -> SimulatorConfig:
        """A new config with ``changes`` applied, in the shapes ``POST /_sim/config`` accepts.

        ``latency`` may be a list of CLI specs (``["4K=0"]``) or a mapping merged per resolution;
        ``profile`` may be a profile string (``"flaky,stuck=0.1"``) or a mapping that replaces it.
        """
        merged = self.model_dump()
        merged.update(changes)
        if "latency" in changes:
            merged["latency"] = {**self.latency, **_latency_changes(changes["latency"])}
        if isinstance(changes.get("profile"), str):
            merged["profile"] = parse_profile(changes["profile"])
        return SimulatorConfig.model_validate(merged)

    def public_view(self) -> dict[str, Any]:
        """The config as JSON, with keys reduced to counts so they never leave the process."""
        view = self.model_dump(mode="json", exclude={"api_keys", "revoked_keys"})
        view["api_keys_count"] = len(self.api_keys)
        view["revoked_keys_count"] = len(self.revoked_keys)
        return view


def instant_latency() -> dict[str, LatencyRange]:
    """Zero generation time at every resolution (tests, demos)."""
    return {resolution: LatencyRange(0.0, 0.0) for resolution in RESOLUTIONS}


def parse_latency(specs: Iterable[str]) -> dict[str, LatencyRange]:
    """Parse CLI specs like ``1080p=1-3``, ``4K=0`` or ``2k=0.5-1.5``; ``*=0`` sets them all."""
    latency: dict[str, LatencyRange] = {}
    for spec in specs:
        target, sep, span = spec.partition("=")
        if not sep:
            target, span = "*", spec
        resolutions = RESOLUTIONS if target.strip() in _WILDCARDS else (_resolution(target),)
        for resolution in resolutions:
            latency[resolution] = _parse_range(span)
    return latency


def _latency_changes(value: Any) -> dict[str, Any]:
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return dict(parse_latency(value))
    if isinstance(value, dict):
        return {_resolution(key): span for key, span in value.items()}
    raise ValueError("latency must be a list of 'RES=MIN-MAX' strings or a mapping")


def _parse_range(span: str) -> LatencyRange:
    low, sep, high = span.strip().partition("-")
    try:
        bounds = (float(low), float(high) if sep else float(low))
    except ValueError:
        raise ValueError(f"latency {span!r} is not 'MIN-MAX' or 'SECONDS'") from None
    return _checked_range(LatencyRange(*bounds))


def _checked_range(span: Any) -> LatencyRange:
    checked = LatencyRange(*(float(bound) for bound in span))
    if not 0 <= checked.min_s <= checked.max_s:
        raise ValueError(f"latency range {tuple(checked)} must satisfy 0 <= min <= max")
    return checked


def _resolution(value: str) -> str:
    canonical = normalize_resolution(value)
    if canonical is None:
        raise ValueError(f"unknown resolution {value!r}; expected one of {', '.join(RESOLUTIONS)}")
    return canonical
