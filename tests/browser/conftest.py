"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium through
the dashboard of a real ``imagegen api`` process, with a real worker behind it.

Nothing is downloaded: the Selenium service is given the chromedriver path, so Selenium Manager
never runs. Without the browser the tests are skipped with a message saying how to install it
(``scripts/ensure-browser.sh``, which ``make test`` runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.harness import free_port, start_imagegen, stop_process, wait_http
from tests.producers import PRODUCER_ENV

CHROMIUM = Path(os.environ.get("IMAGEGEN_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("IMAGEGEN_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
#: Where the pages' screenshots go: a temporary folder of the run, so that tests leave the tree
#: clean; ``make screenshots`` points it at docs/screenshots/ to refresh the README's.
SCREENSHOTS = os.environ.get("IMAGEGEN_TEST_SCREENSHOTS")
#: A laptop screen.
WINDOW = (1366, 900)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-device-scale-factor=1",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return (
                f"{path} is missing: install Debian's {package} (scripts/ensure-browser.sh, "
                "or: sudo apt-get install -y chromium chromium-driver)"
            )
    return None


@pytest.fixture(scope="session")
def browser_paths() -> tuple[Path, Path]:
    reason = _missing_browser()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def driver(
    browser_paths: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """One headless Chromium for the module (cookies are cleared by the tests that need it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    service = Service(executable_path=str(chromedriver), log_output=str(log))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def dashboard_url(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`imagegen api` as its own process, as deployed (the dashboard is part of it)."""
    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    proc: subprocess.Popen[bytes] = start_imagegen(
        {**service_env, **PRODUCER_ENV, "IMAGEGEN_DATA_DIR": str(tmp)},
        tmp / "api.log",
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz")
        yield url
    finally:
        stop_process(proc)
        if os.environ.get("IMAGEGEN_TEST_KEEP_LOGS"):
            shutil.copy(tmp / "api.log", ROOT / "worker-test-api.log")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.mktemp("screenshots")
    if not folder.is_absolute():
        folder = ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder
