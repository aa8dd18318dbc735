"""`imagegen keys`, `imagegen budgets`, `imagegen spend` and `batch submit --max-spend`: the
names scripts code against, their JSON, and bad input answered with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_admin import run, run_json, run_process
from worker.service import keys

pytestmark = pytest.mark.integration


def test_keys_create_list_revoke(configured, service_env) -> None:
    created = run_json(
        service_env, "keys", "create", "--tenant", "search-team", "--scopes", "produce,read",
        "--expires", "90d",
    )  # fmt: skip
    assert set(created) == {"id", "key", "tenant", "scopes", "expires_at"}
    assert created["tenant"] == "search-team" and created["scopes"] == ["read", "produce"]
    assert created["key"].startswith(f"igk_{created['id']}_") and created["expires_at"]
    assert keys.authenticate(created["key"]) is not None

    listed = run_json(service_env, "keys", "list")
    assert [key["id"] for key in listed] == [created["id"]]
    assert "key" not in listed[0] and listed[0]["active"] is True

    revoked = run(service_env, "keys", "revoke", created["id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert keys.authenticate(created["key"]) is None
    assert run_json(service_env, "keys", "list")[0]["active"] is False
    assert run(service_env, "keys", "revoke", "k_000000000000").returncode == 2


@pytest.mark.parametrize(
    "args",
    [
        ("--tenant", "Search Team", "--scopes", "read"),
        ("--tenant", "a", "--scopes", "write"),
        ("--tenant", "a", "--scopes", "read", "--expires", "soon"),
    ],
)
def test_keys_create_refuses_bad_input(configured, service_env, args: tuple[str, ...]) -> None:
    done = run(service_env, "keys", "create", *args)
    assert done.returncode == 2 and "error:" in done.stderr
    assert keys.list_keys() == []


def test_budgets_set_and_list(configured, service_env) -> None:
    shown = run_json(
        service_env, "budgets", "set", "--tenant", "nightly", "--daily", "5", "--monthly", "100",
        "--weight", "0.5", "--max-in-flight", "10",
    )  # fmt: skip
    assert shown["daily"] == 5.0 and shown["monthly"] == 100.0
    assert (shown["weight"], shown["max_in_flight"]) == (0.5, 10)
    assert shown["today"] == {"charged": 0.0, "possible": 0.0, "reserved": 0.0}
    cleared = run_json(service_env, "budgets", "set", "--tenant", "nightly", "--clear", "daily")
    assert cleared["daily"] is None and cleared["monthly"] == 100.0
    listed = run_json(service_env, "budgets", "list")
    assert [row["tenant"] for row in listed] == ["nightly"]
    assert run(service_env, "budgets", "set", "--tenant", "x", "--weight", "0").returncode == 2


def test_spend_and_batch_submit_max_spend(configured, service_env, tmp_path: Path) -> None:
    file = tmp_path / "prompts.jsonl"
    file.write_text('{"prompt": "a"}\n{"prompt": "b", "resolution": "4K"}\n')
    batch = run_json(service_env, "batch", "submit", str(file), "--max-spend", "0.07")
    assert (batch["max_spend"], batch["tenant"]) == (0.07, "default")
    assert batch["spend"]["charged"] == {"amount": 0.0, "count": 0}
    report = run_json(service_env, "spend", "--tenant", "default", "--since", "24h")
    assert report["charged"] == {"amount": 0.0, "count": 0} and report["possible"]["count"] == 0
    assert run(service_env, "spend", "--since", "yesterday").returncode == 2


def test_the_installed_command_knows_the_new_groups(configured, service_env) -> None:
    done = run_process(service_env, "keys", "--help")
    assert done.returncode == 0 and "create" in done.stdout and "revoke" in done.stdout
