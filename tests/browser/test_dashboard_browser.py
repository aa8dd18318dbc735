"""The dashboard in a real browser, against the real stack: `imagegen api` as a process, a real
`imagegen worker` and beat, Postgres, Redis, moto's S3 and the simulator.

- sign in and see the overview refresh itself;
- open a batch whose jobs finished and see every thumbnail load (small, never the 4K original);
- open a failed job, retry it (confirming the dialog) and see it succeed with its image;
- pause and resume submissions from the overview.

Each page is saved as a screenshot in a temporary folder of the run; ``make screenshots`` saves
them under ``docs/screenshots/`` instead (the README shows those).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import _missing_browser
from tests.producers import TOKEN, configure
from tests.waiting import tagged_prompt, wait_for
from worker.service import batches, jobs
from worker.store.fleet import read_fleet_state

MISSING = _missing_browser()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(MISSING is not None, reason=f"browser tests skipped: {MISSING}"),
]
WAIT_S = 30
_IMAGES_LOADED = """
const images = [...document.querySelectorAll(arguments[0])];
return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0)
    ? images.map(i => [i.naturalWidth, i.naturalHeight]) : null;
"""


@pytest.fixture
def stack(
    configured, monkeypatch: pytest.MonkeyPatch, module_worker: Any, dashboard_url: str
) -> str:
    """Tables emptied, this process able to enqueue, a worker running; the dashboard's URL."""
    configure(monkeypatch)
    return dashboard_url


def _wait(driver: Any, condition: Any, timeout_s: float = WAIT_S) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition)


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _screenshot(driver: Any, path: Path) -> None:
    """The whole page (up to 2,400 pixels high), at the laptop's width."""
    from tests.browser.conftest import WINDOW

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], min(int(height) + 140, 2400))  # + the window's frame
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(*WINDOW)


def _sign_in(driver: Any, url: str, shots: Path | None = None) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{url}/dashboard/")
    _wait(driver, lambda d: "/dashboard/login" in d.current_url)
    if shots is not None:
        _screenshot(driver, shots / "login.png")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, ".login button[type=submit]").click()
    _wait(driver, lambda d: d.current_url.rstrip("/").endswith("/dashboard"))


def _confirm(driver: Any, accept: bool = True) -> str:
    from selenium.webdriver.support import expected_conditions as ec

    alert = _wait(driver, ec.alert_is_present(), 5)
    text = str(alert.text)
    if accept:
        alert.accept()
    else:
        alert.dismiss()
    return text


def _finished_batch(prompts: list[str], name: str) -> batches.BatchReceipt:
    items = [
        {
            "prompt": prompt,
            "resolution": "1080p",
            "aspect_ratio": ["1:1", "16:9", "3:4"][n % 3],
            "ref": f"line-{n}",
        }
        for n, prompt in enumerate(prompts)
    ]
    receipt = batches.enqueue_batch(items, name=name)
    wait_for(receipt.job_ids, timeout_s=180)
    return receipt


def test_sign_in_then_the_overview_refreshes_itself(
    driver: Any, stack: str, screenshots: Path
) -> None:
    # Given a few finished jobs, one of them refused by the provider's content policy
    _finished_batch(
        [
            tagged_prompt("harbour"),
            tagged_prompt("lighthouse"),
            tagged_prompt("refused", "[sim:content_policy]"),
        ],
        "overview",
    )
    # When a signed-out person opens the dashboard and signs in with an API token
    _sign_in(driver, stack, screenshots)
    # Then the overview shows the counts and the failure, and refreshes itself
    assert _text(driver, "h1") == "Overview"
    assert _text(driver, '[data-count="succeeded"]') == "2"
    assert _text(driver, '[data-count="failed"]') == "1"
    assert "content_policy" in _text(driver, "#live")
    first = driver.execute_script("return document.querySelector('#live').dataset.refreshedAt")
    assert first is None
    _wait(
        driver,
        lambda d: d.execute_script("return document.querySelector('#live').dataset.refreshedAt"),
        15,
    )
    _screenshot(driver, screenshots / "overview.png")
    assert TOKEN not in driver.page_source
    assert all(TOKEN not in cookie["value"] for cookie in driver.get_cookies())


def test_a_finished_batch_shows_its_thumbnails(driver: Any, stack: str, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # Given a batch whose jobs finished: six pictures and one failure
    prompts = [tagged_prompt(f"product photo {n}") for n in range(6)]
    receipt = _finished_batch([*prompts, tagged_prompt("bad", "[sim:content_policy]")], "catalogue")
    _sign_in(driver, stack)
    # When the batch is opened from the batch list
    driver.get(f"{stack}/dashboard/batches")
    _screenshot(driver, screenshots / "batches.png")
    driver.find_element(By.LINK_TEXT, "catalogue").click()
    _wait(driver, lambda d: str(receipt.batch_id) in d.current_url)
    # Then every picture's thumbnail loads, small (never the full-size original)
    driver.execute_script("document.querySelector('.gallery').scrollIntoView()")
    sizes = _wait(driver, lambda d: d.execute_script(_IMAGES_LOADED, ".gallery img"))
    assert len(sizes) == 6 and all(max(size) <= 256 for size in sizes)
    assert "7 of 7 done" in _text(driver, "#live")
    driver.execute_script("window.scrollTo(0, 0)")
    _screenshot(driver, screenshots / "batch.png")
    # And filtering by state shows only the failed job
    Select(driver.find_element(By.ID, "f-status")).select_by_value("failed")
    driver.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    _wait(driver, lambda d: "status=failed" in d.current_url)
    cards = driver.find_elements(By.CSS_SELECTOR, ".gallery .card")
    assert [card.get_attribute("data-job") for card in cards] == [str(receipt.job_ids[-1])]
    assert "content_policy" in cards[0].text


def test_a_failed_job_is_retried_after_confirmation(
    driver: Any, stack: str, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    # Given a job the provider refused once (its second submit will be accepted)
    prompt = tagged_prompt("a red fox", "[sim:content_policy] [sim:recover_after=1]")
    job_id = jobs.enqueue({"prompt": prompt, "resolution": "1080p"})
    assert wait_for([job_id], timeout_s=60)[job_id]["error_code"] == "content_policy"
    _sign_in(driver, stack)
    driver.get(f"{stack}/dashboard/jobs/{job_id}")
    assert _text(driver, ".job-head .badge") == "failed"
    # When Retry is clicked and the dialog dismissed, nothing happens
    driver.find_element(By.XPATH, "//button[normalize-space()='Retry']").click()
    assert "new paid prediction" in _confirm(driver, accept=False)
    assert jobs.status(job_id)["status"] == "failed"
    # When it is clicked again and confirmed
    driver.find_element(By.XPATH, "//button[normalize-space()='Retry']").click()
    _confirm(driver)
    _wait(driver, lambda d: "notice=retried" in d.current_url)
    assert "sent back to the queue" in _text(driver, ".notice")
    # Then the page follows the job until it succeeds, with its picture and the retry logged
    _wait(driver, lambda d: _text(d, ".job-head .badge") == "succeeded", 90)
    sizes = _wait(driver, lambda d: d.execute_script(_IMAGES_LOADED, ".images img"))
    assert len(sizes) == 1 and max(sizes[0]) <= 512
    timeline = _text(driver, ".timeline")
    assert "retried" in timeline and "succeeded" in timeline
    assert re.fullmatch(r"\d+ \N{MULTIPLICATION SIGN} \d+ px", _text(driver, "[data-dimensions]"))
    _screenshot(driver, screenshots / "job.png")


def test_pause_and_resume_submissions_from_the_overview(driver: Any, stack: str) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(driver, stack)
    # When submissions are paused with a reason, confirmed in the dialog
    driver.find_element(By.ID, "pause-reason").send_keys("provider maintenance")
    driver.find_element(By.XPATH, "//button[normalize-space()='Pause submissions']").click()
    assert "Pause submissions" in _confirm(driver)
    _wait(driver, lambda d: "notice=paused" in d.current_url)
    # Then the fleet is paused, and the overview says so and why
    state = read_fleet_state()
    assert (state.paused, state.reason, state.paused_by) == (
        True,
        "provider maintenance",
        "dashboard:default/env",  # signed in with an IMAGEGEN_API_TOKENS token
    )
    paused = driver.find_element(By.CSS_SELECTOR, "[data-fleet-paused]")
    assert paused.get_attribute("data-fleet-paused") == "yes"
    assert "provider maintenance" in _text(driver, "#live")
    # When submissions are resumed, confirmed
    driver.find_element(By.XPATH, "//button[normalize-space()='Resume submissions']").click()
    _confirm(driver)
    _wait(driver, lambda d: "notice=resumed" in d.current_url)
    # Then they run again
    assert read_fleet_state().paused is False
    running = driver.find_element(By.CSS_SELECTOR, "[data-fleet-paused]")
    assert running.get_attribute("data-fleet-paused") == "no"


_NO_SIDEWAYS_SCROLL = (
    "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
)
_LINES_OF = """
const range = document.createRange();
range.selectNodeContents(document.querySelector(arguments[0]));
return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
"""
_FITS_ITS_CARD = """
const table = document.querySelector(arguments[0]);
return table.getBoundingClientRect().right <= table.closest('.panel').getBoundingClientRect().right;
"""


def test_pages_fit_a_narrow_window_and_tables_fit_their_cards(driver: Any, stack: str) -> None:
    from selenium.webdriver.common.by import By

    from tests.browser.conftest import WINDOW

    # Given a finished batch with a failure, its prompts long enough to wrap
    receipt = _finished_batch(
        [
            tagged_prompt("a harbour at dusk, fishing boats, gulls and a long wet quay, " * 3),
            tagged_prompt("refused", "[sim:content_policy]"),
        ],
        "narrow",
    )
    _sign_in(driver, stack)
    pages = [
        "/dashboard/",
        "/dashboard/batches",
        f"/dashboard/batches/{receipt.batch_id}",
        f"/dashboard/jobs/{receipt.job_ids[0]}",
    ]
    try:
        # When each page is shown at a laptop's width and at a phone's
        for width in (WINDOW[0], 390):
            driver.set_window_size(width, 900)
            for path in pages:
                driver.get(f"{stack}{path}")
                # Then none scrolls sideways
                assert driver.execute_script(_NO_SIDEWAYS_SCROLL), (width, path)
            # And the latest failures stay inside their card, each age on one line
            driver.get(f"{stack}/dashboard/")
            assert driver.execute_script(_FITS_ITS_CARD, "#live table.list"), width
            assert driver.execute_script(_LINES_OF, "#live td.age") == 1, width
    finally:
        driver.set_window_size(*WINDOW)
    # The gallery shows each prompt beside its ref, and the progress bars have a legend
    driver.get(f"{stack}/dashboard/batches/{receipt.batch_id}")
    prompts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".gallery .card-prompt")]
    assert any("harbour at dusk" in p for p in prompts) and len(prompts) == 2
    assert "succeeded" in _text(driver, ".legend") and "failed" in _text(driver, ".legend")
    driver.get(f"{stack}/dashboard/batches")
    assert "queued" in _text(driver, ".legend")
    # And the y-axis of the throughput chart has its scale
    driver.get(f"{stack}/dashboard/")
    labels = driver.find_elements(By.CSS_SELECTOR, "svg.chart .y-axis text")
    assert [e.text for e in labels][:2] == ["0", "1"]
