"""The request log: classification, annotations, bounded entries and exact counts."""

from __future__ import annotations

import pytest

from simulator.requestlog import SUBMIT_PATH, RequestLog, classify

PREDICTION = "a" * 32


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", SUBMIT_PATH, ("submit", None)),
        ("GET", SUBMIT_PATH, ("other", None)),
        ("GET", f"/api/v3/predictions/{PREDICTION}/result", ("poll", PREDICTION)),
        ("GET", f"/outputs/{PREDICTION}/0.png", ("download", PREDICTION)),
        ("GET", "/favicon.ico", ("other", None)),
    ],
)
def test_classify(method: str, path: str, expected: tuple[str, str | None]) -> None:
    assert classify(method, path) == expected


def test_entries_carry_notes_and_status() -> None:
    log = RequestLog()
    entry = log.open("POST", SUBMIT_PATH, now=10.0)

    log.note(entry, prompt="a cat [sim:nsfw]")
    log.note(entry, prediction_id=PREDICTION, faults=["nsfw", "nsfw"])
    log.close(entry, 200)

    assert log.entries() == [
        {
            "seq": 1,
            "time": 10.0,
            "kind": "submit",
            "method": "POST",
            "path": SUBMIT_PATH,
            "status": 200,
            "prompt": "a cat [sim:nsfw]",
            "prediction_id": PREDICTION,
            "faults": ["nsfw"],
        }
    ]


def test_old_entries_go_but_counts_stay_exact() -> None:
    log = RequestLog(max_entries=3)
    for _ in range(5):
        log.close(log.open("GET", f"/api/v3/predictions/{PREDICTION}/result", now=0.0), 200)
    submit = log.open("POST", SUBMIT_PATH, now=0.0)
    log.note(submit, prompt="p")

    assert [entry["seq"] for entry in log.entries()] == [4, 5, 6]
    assert [entry["seq"] for entry in log.entries(kind="poll", since=4)] == [5]
    counts = log.counts()
    assert counts["total_requests"] == 6
    assert counts["polls_per_prediction"] == {PREDICTION: 5}
    assert counts["submissions_per_prompt"] == {"p": 1}
    assert counts["requests_by_kind"]["poll"] == {"200": 5}
    assert counts["requests_by_kind"]["submit"] == {}  # still in flight


def test_clear_restarts() -> None:
    log = RequestLog()
    log.open("GET", "/x", now=0.0)

    log.clear()

    assert log.entries() == [] and log.counts()["total_requests"] == 0
    assert log.open("GET", "/x", now=0.0).seq == 1


def test_a_request_that_outlives_a_reset_does_not_count_after_it() -> None:
    log = RequestLog()
    slow = log.open("POST", SUBMIT_PATH, now=0.0)

    log.clear()
    log.note(slow, prompt="ghost")
    log.close(slow, 200)

    assert log.counts()["requests_by_kind"]["submit"] == {}
    assert log.counts()["submissions_per_prompt"] == {}
