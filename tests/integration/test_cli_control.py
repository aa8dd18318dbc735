"""Issue 14 from the command line, against real Postgres: `batch list`, `batch cancel`, short
ids wherever an id is taken, metadata in `status --json` and the manifest."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.test_admin import failed_job, run, run_json, sql
from tests.integration.test_api_control import _batch_with_ids
from worker.service import batches, jobs

pytestmark = pytest.mark.integration


def a_batch(count: int, **options: object) -> batches.BatchReceipt:
    items = [{"prompt": f"p{i}", "ref": f"r{i}", "metadata": {"i": i}} for i in range(count)]
    return batches.enqueue_batch(items, dispatch=False, **options)  # type: ignore[arg-type]


def test_batch_list_and_cancel_by_short_id(configured, service_env) -> None:
    first = a_batch(2, name="first", metadata={"run": "a"})
    second = a_batch(3, name="second")
    listed = run_json(service_env, "batch", "list", "--limit", "1")
    assert [item["id"] for item in listed["items"]] == [str(second.batch_id)]
    more = run_json(service_env, "batch", "list", "--cursor", listed["next_cursor"])
    assert str(first.batch_id) in [item["id"] for item in more["items"]]
    text = run(service_env, "batch", "list")
    assert text.returncode == 0 and str(second.batch_id) in text.stdout and "second" in text.stdout
    done = run_json(service_env, "batch", "cancel", str(second.batch_id)[:8])
    assert done["cancelled"] == 3 and done["batch"]["counts"]["cancelled"] == 3
    again = run(service_env, "batch", "cancel", str(second.batch_id))
    assert again.returncode == 0 and "0 job(s) cancelled" in again.stdout
    assert run(service_env, "batch", "cancel", str(uuid.uuid4())).returncode == 1


def test_short_ids_in_status_cancel_retry_and_ambiguity(configured, service_env) -> None:
    job_id = jobs.enqueue({"prompt": "a cat"}, metadata={"order": "o-1"}, dispatch=False)
    view = run_json(service_env, "status", str(job_id)[:8])
    assert view["id"] == str(job_id) and view["metadata"] == {"order": "o-1"}
    failed = failed_job("provider_failed")
    retried = run_json(service_env, "retry", str(failed)[:10])
    assert retried["ids"] == [str(failed)]
    prefix = uuid.uuid4().hex[:8]
    twins = [uuid.UUID(prefix + uuid.uuid4().hex[8:]) for _ in range(2)]
    _batch_with_ids(twins)
    ambiguous = run(service_env, "cancel", prefix)
    assert ambiguous.returncode == 2, ambiguous.stdout
    message = " ".join(ambiguous.stderr.split())
    assert "matches 2 or more ids" in message
    assert all(str(twin) in message.replace(" ", "") for twin in twins)
    assert (
        sql(
            "SELECT count(*) FROM jobs WHERE id IN (:a, :b) AND status = 'queued'",
            a=twins[0],
            b=twins[1],
        )[0][0]
        == 2
    )
    missing = run(service_env, "status", "ffffffff-ffff-ffff")
    assert missing.returncode == 1 and "no job with an id starting with" in missing.stderr


def test_manifest_lines_carry_prompt_parameters_and_metadata(configured, service_env) -> None:
    receipt = a_batch(2, metadata={"run": "nightly"})
    done = run(service_env, "batch", "manifest", str(receipt.batch_id)[:8])
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["prompt"] for line in lines] == ["p0", "p1"]
    assert lines[1]["metadata"] == {"run": "nightly", "i": 1}
    assert lines[0]["parameters"] == {"aspect_ratio": "1:1", "resolution": "1080p"}


def test_enqueue_and_batch_submit_take_metadata(configured, service_env, tmp_path) -> None:
    done = run_json(service_env, "enqueue", "a fox", "--metadata", '{"order": "o-9"}')
    assert jobs.status(uuid.UUID(done["id"]))["metadata"] == {"order": "o-9"}
    bad = run(service_env, "enqueue", "a fox", "--metadata", '["not", "an object"]')
    assert bad.returncode == 2 and "metadata: must be a JSON object" in bad.stderr
    file = tmp_path / "b.jsonl"
    file.write_text('{"prompt": "a", "metadata": {"sku": "1"}}\n{"prompt": "b"}\n')
    submitted = run_json(service_env, "batch", "submit", str(file), "--metadata", '{"run": "r"}')
    assert submitted["metadata"] == {"run": "r"}
    lines = list(batches.manifest(uuid.UUID(submitted["id"])))
    assert [line["metadata"] for line in lines] == [{"run": "r", "sku": "1"}, {"run": "r"}]
