"""Logging: one JSON object per line for services, short text lines on a terminal.

Log calls use a stable event name as the message and structured context in ``extra``
(``job_id``, ``prediction_id``, ``attempt`` ...), never the API key. As a last line of
defence the handler also blanks the configured secrets and any ``Bearer`` credential from
every formatted line, tracebacks included.

Celery's two per-task INFO lines ("received", "succeeded") are kept at WARNING unless the level
is DEBUG: at hundreds of tasks a second they would drown everything else. The beat's line for
each periodic task it sends (a dispatch cycle every second: 3,600 lines an hour) is a DEBUG
line (:class:`PeriodicSendsAtDebug`); its other lines keep their levels. Switching Celery's
own logging setup off, so that worker and beat lines go through the same handler, is the
broker's part (``worker.broker.app.keep_celery_logging_ours``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from worker.core.settings import Settings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")
#: Secrets shorter than this would blank ordinary words; real keys are far longer.
_MIN_SECRET_CHARS = 6


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class PeriodicSendsAtDebug(logging.Filter):
    """Turns the beat's "Scheduler: Sending due task ..." INFO lines into DEBUG lines, kept only
    when the logger's level lets DEBUG through."""

    PREFIX = "Scheduler: Sending due task"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not str(record.msg).startswith(self.PREFIX):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_PERIODIC_SENDS = PeriodicSendsAtDebug()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {context}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class RedactingHandler(logging.StreamHandler[Any]):
    """A stream handler that blanks secrets from every formatted line."""

    def __init__(self, stream: Any, secrets: Iterable[str] = ()) -> None:
        super().__init__(stream)
        self.secrets = [s for s in secrets if len(s) >= _MIN_SECRET_CHARS]

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return _BEARER.sub("Bearer ***", line)


def configure_logging(
    level: str = "INFO", *, json_lines: bool | None = None, secrets: Iterable[str] = ()
) -> None:
    """Send logs to stderr, as JSON unless stderr is a terminal (or ``json_lines`` says)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = RedactingHandler(sys.stderr, secrets)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in _PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    logging.getLogger("celery.beat").addFilter(_PERIODIC_SENDS)
    logging.captureWarnings(True)  # warnings become log lines too
    if json_lines:
        _log_what_would_be_printed()


def configure_from_settings(settings: Settings, level: str | None = None) -> bool:
    """Configure logging as ``IMAGEGEN_LOG_FORMAT`` / ``IMAGEGEN_LOG_LEVEL`` say, blanking every
    secret setting (provider key, API tokens, webhook key). Returns whether lines are JSON."""
    json_lines = {"json": True, "text": False}.get(settings.log_format, not sys.stderr.isatty())
    configure_logging(
        level or settings.log_level, json_lines=json_lines, secrets=secrets_of(settings)
    )
    return json_lines


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value of the settings, and each item of comma-separated ones."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            found += [raw.strip(), *(part.strip() for part in raw.split(",") if "," in raw)]
    return [secret for secret in found if secret]


def _log_what_would_be_printed() -> None:
    """Keep every line JSON: uncaught exceptions (of any thread) are logged."""

    def excepthook(kind: type[BaseException], error: BaseException | None, tb: Any) -> None:
        error = error if error is not None else kind()
        logging.getLogger("imagegen").critical("uncaught_exception", exc_info=(kind, error, tb))

    sys.excepthook = excepthook
    threading.excepthook = lambda hook: excepthook(
        hook.exc_type, hook.exc_value, hook.exc_traceback
    )


def say_json(message: str, stream: Any = None) -> None:
    """Write ``message`` as one JSON line with a bare ``os.write`` (safe in a signal handler):
    what replaces the few messages Celery's worker prints straight to the terminal."""
    entry = {
        "ts": datetime.now(UTC).isoformat(),
        "level": "warning",
        "logger": "celery.apps.worker",
        "event": message.strip(),
    }
    with contextlib.suppress(OSError):
        os.write(
            sys.__stderr__.fileno() if sys.__stderr__ else 2, (json.dumps(entry) + "\n").encode()
        )
