"""One validated settings object, read from the environment through a cached ``get_settings()``.

Unset service URLs fall back to the embedded single-machine mode: a SQLite file, an in-process
broker and images written under a local folder, all below ``IMAGEGEN_DATA_DIR``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.errors import ConfigurationError
from worker.core.tenancy import DEFAULT_PRICES, parse_prices

ENV_PREFIX = "IMAGEGEN_"
#: Settings read from variables outside the IMAGEGEN_ prefix, by field name.
FOREIGN_ENV = {"api_key": "GPTPROTO_API_KEY", "base_url": "GPTPROTO_BASE_URL"}
#: The broker queues (``worker.broker.app`` routes the tasks): the steps that keep jobs moving
#: (dispatch, submit, poll, reconcile, webhooks), and the bulk copies to storage.
STEPS_QUEUE = "imagegen"
TRANSFER_QUEUE = "imagegen.transfer"
QUEUES = (STEPS_QUEUE, TRANSFER_QUEUE)
#: The shortest API token accepted: 32 random characters are beyond any guessing.
MIN_TOKEN_CHARS = 32


class Settings(BaseSettings):
    """Everything configurable, with units in the names."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,  # the values may be secrets
    )

    # --- services ------------------------------------------------------------------------------
    data_dir: Path = Path(".imagegen")
    database_url: str | None = None
    #: Connections each process keeps open to the database (or to PgBouncer); unset: the
    #: worker's concurrency + 4, at least 10.
    db_pool_size: int | None = Field(default=None, ge=1)
    #: Extra connections a process may open for a burst, closed when handed back.
    db_max_overflow: int = Field(default=10, ge=0)
    #: The database URL points at a pooler in transaction mode (PgBouncer's
    #: ``pool_mode = transaction``): no server-side prepared statements, nothing session-scoped.
    db_transaction_pooling: bool = False
    broker_url: str | None = None
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    api_key: SecretStr | None = Field(default=None, validation_alias="GPTPROTO_API_KEY")
    base_url: str = Field(default="https://gptproto.com", validation_alias="GPTPROTO_BASE_URL")

    # --- provider calls ------------------------------------------------------------------------
    connect_timeout_s: float = Field(default=5.0, gt=0)
    submit_timeout_s: float = Field(default=30.0, gt=0)
    poll_timeout_s: float = Field(default=15.0, gt=0)

    # --- polling -------------------------------------------------------------------------------
    #: First poll after a 1080p submit (x4/3 at 2K, x2 at 4K): the fastest generation time.
    poll_initial_delay_s: float = Field(default=15.0, ge=0)
    #: Later polls come every ``poll_interval_s + poll_elapsed_fraction x time since the
    #: submit``, at most ``poll_max_interval_s`` apart.
    poll_interval_s: float = Field(default=2.0, gt=0)
    poll_elapsed_fraction: float = Field(default=0.1, ge=0, le=1)
    poll_max_interval_s: float = Field(default=20.0, gt=0)

    # --- retries, leases, deadlines ------------------------------------------------------------
    max_submit_attempts: int = Field(default=6, ge=1)
    max_poll_errors: int = Field(default=20, ge=1)
    max_transfer_attempts: int = Field(default=5, ge=1)
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    ambiguous_submit: Literal["retry", "fail"] = "retry"
    submit_lease_s: float = Field(default=120.0, gt=0)
    transfer_lease_s: float = Field(default=900.0, gt=0)
    job_deadline_s: float = Field(default=6 * 3600.0, gt=0)

    # --- recovery ------------------------------------------------------------------------------
    reconcile_interval_s: float = Field(default=15.0, gt=0)
    stale_after_s: float = Field(default=60.0, gt=0)
    reconcile_batch: int = Field(default=500, ge=1)

    # --- fleet-wide limits (shared by every worker through the database) ----------------------
    #: Submissions per second across the whole fleet (token bucket); 0 turns the limit off.
    submit_rate: float = Field(default=2.0, ge=0)
    #: Submissions the bucket lets through at once after a quiet spell.
    submit_burst: int = Field(default=10, ge=1)
    #: Predictions in flight at the provider (submitting or running) across the fleet.
    max_in_flight: int = Field(default=50, ge=1)
    #: Of ``max_in_flight``, slots batch jobs may not take (kept for interactive jobs);
    #: unset: a tenth, at least one when the cap allows it.
    interactive_reserve: int | None = Field(default=None, ge=0)
    #: Polls per second across the fleet; 0 turns the limit off.
    poll_rate: float = Field(default=20.0, ge=0)
    poll_burst: int = Field(default=50, ge=1)
    #: After a 429 without Retry-After: base and cap of the fleet's exponential cool-down.
    cooldown_base_s: float = Field(default=1.0, gt=0)
    cooldown_max_s: float = Field(default=120.0, gt=0)
    #: Each 429 halves the submit rate, down to this fraction of ``submit_rate``...
    rate_min_fraction: float = Field(default=0.1, gt=0, le=1)
    #: ...and it climbs back from that fraction to the full rate over this many seconds.
    rate_recovery_s: float = Field(default=300.0, gt=0)
    #: Consecutive submit failures (5xx, timeouts, unreachable) that open the circuit breaker.
    breaker_threshold: int = Field(default=5, ge=1)
    #: How long an open breaker waits before letting one probe submission through.
    breaker_open_s: float = Field(default=30.0, gt=0)
    #: How often the dispatcher moves queued jobs into the broker (it also runs on demand).
    dispatch_interval_s: float = Field(default=1.0, gt=0)
    #: Most submit messages one dispatch cycle sends.
    dispatch_max_per_cycle: int = Field(default=1000, ge=1)
    #: A dispatched job not picked up by a worker within this long is dispatched again.
    dispatch_lost_after_s: float = Field(default=30.0, gt=0)

    # --- transfer ------------------------------------------------------------------------------
    #: Longest wait for any one read of an output download.
    download_timeout_s: float = Field(default=60.0, gt=0)
    #: Longest a whole output download may take, however steadily the bytes come.
    download_deadline_s: float = Field(default=300.0, gt=0)
    #: Slowest average rate (bytes/s) an output download may keep after its first 10 s.
    download_min_rate_bps: int = Field(default=32 * 1024, ge=0)
    max_output_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    #: Outputs with more pixels are refused as image bombs (the provider's 4K is 8.3 MP).
    max_output_pixels: int = Field(default=4096 * 4096, gt=0, le=150_000_000)
    #: Output URLs copied per job; a prediction answering more is cut here (it sends one).
    max_outputs: int = Field(default=4, ge=1, le=100)
    #: How long the provider's output URLs live (the contract: about a day). A copy that
    #: fails because storage is down is tried again until then, without spending attempts.
    output_url_ttl_s: float = Field(default=23 * 3600.0, gt=0)
    #: Output hosts (``host`` or ``host:port``, comma-separated) that may be private or plain
    #: http: the simulator on 127.0.0.1, a provider on a private network. None by default.
    trusted_output_hosts: str = ""
    multipart_chunk_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    presign_expiry_s: int = Field(default=3600, gt=0)

    # --- worker --------------------------------------------------------------------------------
    worker_concurrency: int = Field(default=16, ge=1)
    #: The queues a worker takes tasks from, comma-separated (all of them by default).
    worker_queues: str = ",".join(QUEUES)
    visibility_timeout_s: int = Field(default=3600, ge=60)
    allow_private_urls: bool = False
    log_level: str = "INFO"

    # --- producers: HTTP API, batches, webhooks -------------------------------------------------
    #: Bearer tokens accepted by the HTTP API, comma-separated, each at least
    #: :data:`MIN_TOKEN_CHARS` long; none set means every call is 401.
    api_tokens: SecretStr | None = None
    #: Failed sign-ins and bearer tokens one client address may send per window before the
    #: next failures are answered 429 (a valid token is never slowed); 0 turns the limit off.
    auth_max_failures: int = Field(default=10, ge=0)
    auth_failure_window_s: float = Field(default=300.0, gt=0)
    api_max_batch_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    batch_max_jobs: int = Field(default=100_000, ge=1)
    #: Key of the HMAC-SHA256 webhook signatures; never logged or stored.
    webhook_secret: SecretStr | None = None
    #: Allow plain-http callback URLs (local receivers, tests); https only by default.
    allow_http_callbacks: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_base_s: float = Field(default=5.0, gt=0)
    webhook_retry_max_s: float = Field(default=600.0, gt=0)
    webhook_give_up_after_s: float = Field(default=24 * 3600.0, gt=0)
    #: What one image costs by resolution, a JSON object (the operator's estimate of the
    #: account's prices; ``worker.core.tenancy.DEFAULT_PRICES`` for any left out).
    prices: str = Field(default_factory=lambda: json.dumps(DEFAULT_PRICES))

    # --- operations ----------------------------------------------------------------------------
    #: ``json`` lines for services, ``text`` for people; ``auto``: text only on a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Prometheus port of each worker process; 0 disables it.
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    #: Interface the worker's metrics port listens on: loopback unless a scraper on another
    #: host needs it (the compose file sets 0.0.0.0 inside its private network). No auth.
    metrics_addr: str = "127.0.0.1"
    #: Per-dependency timeout of ``/readyz`` checks.
    ready_timeout_s: float = Field(default=2.0, gt=0)
    #: Scheduled pruning of finished jobs older than this; unset (the default) = off.
    prune_older_than_days: float | None = Field(default=None, gt=0)
    prune_delete_objects: bool = False
    prune_batch_size: int = Field(default=500, ge=1, le=10_000)
    prune_interval_s: float = Field(default=3600.0, gt=0)

    @field_validator(
        "database_url",
        "broker_url",
        "storage_url",
        "s3_endpoint_url",
        "prune_older_than_days",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme == "s3" and parts.netloc:
            return value
        if parts.scheme == "file" and parts.path:
            return value
        raise ValueError("must be s3://bucket[/prefix] or file:///absolute/folder")

    @field_validator("trusted_output_hosts")
    @classmethod
    def _host_entries(cls, value: str) -> str:
        for entry in (item.strip() for item in value.split(",")):
            if entry:
                _host_entry(entry)
        return value

    @field_validator("api_tokens")
    @classmethod
    def _long_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        tokens = [t.strip() for t in (value.get_secret_value() if value else "").split(",")]
        short = [n for n, token in enumerate(tokens, 1) if token and len(token) < MIN_TOKEN_CHARS]
        if short:  # which entries, never what they hold
            which = ", ".join(map(str, short))
            raise ValueError(
                f"each token must be at least {MIN_TOKEN_CHARS} characters "
                f"(too short: entry {which} of the comma-separated list)"
            )
        return value

    @field_validator("prices")
    @classmethod
    def _price_table(cls, value: str) -> str:
        try:
            parse_prices(value)
        except json.JSONDecodeError:
            raise ValueError("must be a JSON object of prices by resolution") from None
        return value

    @field_validator("worker_queues")
    @classmethod
    def _known_queues(cls, value: str) -> str:
        return ",".join(parse_queues(value))

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _leases_outlast_calls(self) -> Settings:
        # a lease shorter than the call it covers would let a second worker repeat the call
        if self.submit_lease_s <= self.submit_timeout_s + self.connect_timeout_s:
            raise ValueError(
                "IMAGEGEN_SUBMIT_LEASE_S must exceed IMAGEGEN_SUBMIT_TIMEOUT_S + "
                "IMAGEGEN_CONNECT_TIMEOUT_S"
            )
        return self

    # --- derived -------------------------------------------------------------------------------
    @property
    def worker_queue_list(self) -> list[str]:
        return self.worker_queues.split(",")

    @property
    def reserved_for_interactive(self) -> int:
        """In-flight slots batch jobs leave free for interactive ones."""
        if self.interactive_reserve is not None:
            return min(self.interactive_reserve, self.max_in_flight - 1)
        return max(1, self.max_in_flight // 10) if self.max_in_flight > 1 else 0

    @property
    def api_token_list(self) -> list[bytes]:
        """The accepted API tokens (blank entries ignored)."""
        raw = self.api_tokens.get_secret_value() if self.api_tokens else ""
        return [token.strip().encode() for token in raw.split(",") if token.strip()]

    @property
    def trusted_output_host_set(self) -> frozenset[str]:
        """``host`` and ``host:port`` entries, lower case, IPv6 hosts without brackets."""
        entries = (item.strip() for item in self.trusted_output_hosts.split(","))
        return frozenset(_host_entry(entry) for entry in entries if entry)

    @property
    def effective_db_pool_size(self) -> int:
        """Connections kept open per process: one per worker thread and a few for the
        dispatcher, heartbeats and metrics reads."""
        return self.db_pool_size or max(10, self.worker_concurrency + 4)

    @property
    def price_table(self) -> dict[str, int]:
        """Micro-units by resolution."""
        return parse_prices(self.prices)

    @property
    def embedded(self) -> bool:
        """True when no database server is configured (the single-machine mode)."""
        return self.database_url is None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'imagegen.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        # the folders are transport options; the host only keeps kombu from warning that
        # it is missing
        return "filesystem://localhost/"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or (self.data_dir / "images").resolve().as_uri()


def _host_entry(entry: str) -> str:
    """``host`` or ``host:port`` normalised (``[::1]:8090`` -> ``::1:8090``); ValueError if
    it is neither."""
    try:
        parts = urlsplit(f"//{entry}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or parts.path or parts.query or parts.username is not None:
        raise ValueError(f"{entry!r} is not a host or host:port")
    return f"{host}:{port}" if port else host


def env_name(field: str) -> str:
    return FOREIGN_ENV.get(field, ENV_PREFIX + field.upper())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, validated once; errors name the environment variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            (f"{env_name(str(e['loc'][0]))}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None


def reset_settings() -> None:
    """Forget the cached settings (tests, and commands that change the environment)."""
    get_settings.cache_clear()


def parse_queues(value: str) -> list[str]:
    """The queue names of a comma-separated list, each one of :data:`QUEUES`, at least one."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if unknown or not names:
        raise ValueError(
            f"must name one or more of {', '.join(QUEUES)} (comma-separated); got {value.strip()!r}"
        )
    return list(dict.fromkeys(names))
