"""`imagegen worker` and `imagegen beat` leave with Celery's exit code: a worker that Celery
stopped on an error exits non-zero (its supervisor restarts it), one told to stop exits 0.
Celery itself is replaced here by what it returns; the broker outage that used to stop a
worker with exit code 0 is tests/e2e/test_broker_outage_e2e.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from worker.cli import processes
from worker.cli.main import app
from worker.core.settings import reset_settings


@pytest.fixture
def celery_returns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Celery's ``start`` stubbed to return the code put into the list (and record argv)."""
    returned: list[Any] = []
    started: list[list[str]] = []

    def start(argv: list[str]) -> Any:
        started.append(argv)
        return returned[0]

    monkeypatch.setattr(processes.celery, "start", start)
    monkeypatch.setattr(processes, "_preflight", lambda settings: None)
    monkeypatch.setattr(processes.metrics, "serve", lambda *args: None)
    monkeypatch.setattr(processes, "keep_celery_logging_ours", lambda **kwargs: None)
    monkeypatch.setattr(processes, "configure_from_settings", lambda *args: False)
    monkeypatch.setenv("GPTPROTO_API_KEY", "sk-test-exit-codes-0123456789")
    reset_settings()
    returned.append(None)
    yield returned
    reset_settings()


@pytest.mark.parametrize("command", ["worker", "beat"])
@pytest.mark.parametrize(("celery_code", "exit_code"), [(None, 0), (0, 0), (1, 1), (70, 70)])
def test_the_process_exits_with_celerys_code(
    celery_returns: list[Any], command: str, celery_code: Any, exit_code: int, tmp_path
) -> None:
    celery_returns[0] = celery_code
    result = CliRunner().invoke(app, [command], env={"IMAGEGEN_DATA_DIR": str(tmp_path)})
    assert result.exit_code == exit_code, result.output
