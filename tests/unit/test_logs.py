"""Log lines: JSON with stable keys for services, secrets blanked from every line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from worker.telemetry.logs import JsonFormatter, RedactingHandler, TextFormatter

KEY = "sk-test-4f8d2c9e1b7a"


def emit(
    formatter: logging.Formatter,
    message: str,
    *,
    secrets: tuple[str, ...] = (KEY,),
    exc: BaseException | None = None,
    **extra: object,
) -> str:
    stream = io.StringIO()
    handler = RedactingHandler(stream, secrets)
    handler.setFormatter(formatter)
    logger = logging.getLogger("imagegen.test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    logger.info(message, extra=extra, exc_info=exc_info)
    return stream.getvalue()


def test_json_lines_carry_the_event_and_its_context() -> None:
    line = emit(JsonFormatter(), "submitted", job_id="j-1", prediction_id="p-1", attempt=2)
    entry = json.loads(line)
    assert entry["event"] == "submitted" and entry["level"] == "info"
    assert entry["logger"] == "imagegen.test.logs" and entry["ts"].endswith("+00:00")
    assert (entry["job_id"], entry["prediction_id"], entry["attempt"]) == ("j-1", "p-1", 2)
    assert line.count("\n") == 1


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_the_key_and_bearer_credentials_never_reach_the_stream(
    formatter: logging.Formatter,
) -> None:
    try:
        raise RuntimeError(f"header was Authorization: Bearer {KEY}, key {KEY}")
    except RuntimeError as error:
        text = emit(formatter, f"oops {KEY}", exc=error, detail=f"x{KEY}y", header="Bearer abc.def")
    assert KEY not in text and "abc.def" not in text
    assert "***" in text


def test_short_secrets_are_not_used_for_blanking() -> None:
    assert "cat" in emit(TextFormatter(), "a cat", secrets=("cat",))


def test_every_secret_setting_is_blanked(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.core.settings import Settings
    from worker.telemetry.logs import secrets_of

    monkeypatch.setenv("GPTPROTO_API_KEY", KEY)
    monkeypatch.setenv(
        "IMAGEGEN_API_TOKENS",
        "token-one-1234-5678-9abc-def0-12345, token-two-5678-9abc-def0-1234-56789",
    )
    monkeypatch.setenv("IMAGEGEN_WEBHOOK_SECRET", "whsec-abcdef")
    found = set(secrets_of(Settings()))
    assert {
        KEY,
        "token-one-1234-5678-9abc-def0-12345",
        "token-two-5678-9abc-def0-1234-56789",
        "whsec-abcdef",
    } <= found


def test_in_json_mode_even_uncaught_errors_and_warnings_are_json_lines() -> None:
    import subprocess
    import sys

    script = (
        "import threading, warnings\n"
        "from worker.telemetry.logs import configure_logging\n"
        f"configure_logging('INFO', json_lines=True, secrets=['{KEY}'])\n"
        "warnings.warn('careful')\n"
        "t = threading.Thread(target=lambda: 1 / 0, name='t'); t.start(); t.join()\n"
        f"raise RuntimeError('bad key {KEY}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["event"] for e in entries][1:] == ["uncaught_exception"] * 2
    assert "careful" in entries[0]["event"] and entries[0]["logger"] == "py.warnings"
    assert "ZeroDivisionError" in entries[1]["exception"]
    assert KEY not in done.stderr and done.returncode == 1


def test_the_beats_periodic_sends_are_debug_lines() -> None:
    # Given the beat's logger behind the process's configuration at INFO
    from worker.telemetry.logs import PeriodicSendsAtDebug

    stream = io.StringIO()
    handler = RedactingHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("imagegen.test.beat")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.filters[:] = [PeriodicSendsAtDebug()]
    logger.setLevel(logging.INFO)
    # When it logs a send and a start-up line
    logger.info("Scheduler: Sending due task %s (%s)", "dispatch", "imagegen.dispatch")
    logger.info("beat: Starting...")
    # Then only the start-up line is written; at DEBUG the send is, as a DEBUG line
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "beat: Starting..."
    ]
    logger.setLevel(logging.DEBUG)
    logger.info("Scheduler: Sending due task %s (%s)", "dispatch", "imagegen.dispatch")
    last = json.loads(stream.getvalue().splitlines()[-1])
    assert last["level"] == "debug" and last["event"].startswith("Scheduler: Sending due task")
