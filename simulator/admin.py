"""The admin API under ``/_sim/``: what the simulator saw, and run-time control.

Tests and benchmarks use it to count requests per prompt or prediction, to read a prediction's
internal record (``completed_at`` for lag measurements), to change latency, fault profile or keys
while a run is going, and to start over. It needs no key and is never logged.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from simulator.faults import FAULTS, PRESETS
from simulator.runtime import simulator_of

router = APIRouter(prefix="/_sim", tags=["simulator admin"])


@router.get("/requests")
async def list_requests(
    request: Request, kind: str | None = None, prediction_id: str | None = None, since: int = 0
) -> dict[str, Any]:
    """The request log, oldest first; ``kind`` is submit, poll, download or other."""
    entries = simulator_of(request).log.entries(kind=kind, prediction_id=prediction_id, since=since)
    return {"requests": entries}


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Counts per prompt, per prediction, and per kind and status."""
    return simulator_of(request).stats()


@router.get("/predictions")
async def list_predictions(request: Request) -> dict[str, Any]:
    """Every prediction's internal record, oldest first."""
    sim = simulator_of(request)
    base_url = str(request.base_url)
    return {"predictions": [sim.prediction_view(item, base_url) for item in sim.store.all()]}


@router.get("/predictions/{prediction_id}", response_model=None)
async def get_prediction(request: Request, prediction_id: str) -> dict[str, Any] | JSONResponse:
    """One prediction's internal record: ``completed_at``, faults, counts, output URLs."""
    sim = simulator_of(request)
    prediction = sim.store.get(prediction_id)
    if prediction is None:
        return _error(404, f"no prediction {prediction_id}", "not_found")
    return sim.prediction_view(prediction, str(request.base_url))


@router.post("/reset")
async def reset(request: Request, keep_config: bool = False) -> dict[str, Any]:
    """Forget predictions, log and pictures; restore the startup config unless ``keep_config``."""
    sim = simulator_of(request)
    sim.reset(keep_config=keep_config)
    return {"ok": True, "config": sim.config.public_view()}


@router.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    """The current config; API keys are reported as counts only."""
    return simulator_of(request).config.public_view()


@router.post("/config", response_model=None)
async def update_config(
    request: Request, changes: dict[str, Any] = Body(...)
) -> dict[str, Any] | JSONResponse:
    """Change the config while running, e.g. ``{"revoked_keys": ["sk-old"]}`` or
    ``{"latency": ["4K=0"], "profile": "flaky,stuck=0.1"}``; answers the new config."""
    sim = simulator_of(request)
    try:
        return sim.update_config(changes).public_view()
    except ValidationError as exc:
        return _error(400, _describe(exc), "invalid_config")
    except ValueError as exc:
        return _error(400, str(exc), "invalid_config")


@router.get("/faults")
async def list_faults() -> dict[str, Any]:
    """The fault registry (name, stage, summary, default ARG) and the profile presets."""
    faults = [
        {
            "name": fault.name,
            "stage": fault.stage.value,
            "summary": fault.summary,
            "default_arg": fault.default_arg,
        }
        for fault in FAULTS.values()
    ]
    return {"faults": faults, "presets": PRESETS}


def _describe(exc: ValidationError) -> str:
    # Without the inputs: a rejected value could be an API key.
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
        for error in exc.errors(include_input=False)
    )


def _error(status: int, message: str, type_: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_}}, status_code=status)
