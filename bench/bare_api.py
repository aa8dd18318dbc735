"""The producers benchmark's baseline: a bare FastAPI endpoint that does one INSERT.

``POST /v1/jobs`` takes any JSON object, inserts its prompt and the body into a plain table
(``bench_bare_jobs``: a key, no index, no constraint) and answers 202 with the new id. It
runs the way ``imagegen api`` runs the real API: uvicorn, the same number of processes, a
synchronous route in FastAPI's thread pool, the project's engine and its pool settings. None of
the API's work: no token, no validation, no idempotency, no event, no nudge of the broker.

Serve with ``uvicorn bench.bare_api:create_app --factory`` (``bench.producers`` does).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Body, FastAPI
from sqlalchemy import text

from worker.db.engine import get_engine

TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_bare_jobs (id bigserial PRIMARY KEY, prompt text, "
    "body jsonb, created_at timestamptz NOT NULL DEFAULT now())"
)
_INSERT = text(
    "INSERT INTO bench_bare_jobs (prompt, body) VALUES (:prompt, CAST(:body AS jsonb)) RETURNING id"
)


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/jobs", status_code=202)
    def create_job(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        with get_engine().begin() as conn:
            job_id = conn.scalar(
                _INSERT, {"prompt": str(body.get("prompt", "")), "body": json.dumps(body)}
            )
        return {"id": job_id, "status": "queued"}

    return app
