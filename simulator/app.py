"""The FastAPI app: the provider's endpoints (submit, result, output download) and the admin API.

Handlers stay thin: they check the key, ask the ``Simulator`` what to do, and shape the answer with
``wire`` (JSON) or ``outputs`` (downloads).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from simulator.admin import router as admin_router
from simulator.config import SimulatorConfig
from simulator.faults import FaultSet, Stage, UnknownFault, fires_on, in_stage, number_arg
from simulator.outputs import (
    download_faults,
    expired_response,
    output_path,
    picture_response,
    s3_error,
)
from simulator.requestlog import SUBMIT_PATH, RequestLogMiddleware, entry_of
from simulator.runtime import Simulator, Submission, simulator_of
from simulator.state import Prediction
from simulator.validation import InvalidRequest, SubmitParams, parse_submit
from simulator.wire import (
    ErrorSpec,
    envelope,
    error_response,
    prediction_data,
    server_error,
    submit_error,
)

RESULT_PATH = "/api/v3/predictions/{prediction_id}/result"
_POLL_ERRORS = {
    "poll_429": ErrorSpec(429, "Too many requests, please slow down", "rate_limit_exceeded"),
    "poll_500": ErrorSpec(500, "Internal server error", "internal_error"),
}
_GHOST_STATUSES = {"500", "502", "503", "504"}

router = APIRouter()


def create_app(
    config: SimulatorConfig | None = None, *, simulator: Simulator | None = None
) -> FastAPI:
    """The simulator's ASGI app; pass ``simulator`` to share state (and an injected clock)."""
    sim = simulator or Simulator(config)
    app = FastAPI(title="GPTProto viduq2 simulator", version="1")
    app.state.simulator = sim
    app.include_router(router)
    app.include_router(admin_router)
    app.add_middleware(RequestLogMiddleware, log=sim.log, clock=sim.clock)
    return app


def api_key_from(header: str | None) -> str | None:
    """The key in an ``Authorization`` header, raw (``sk-...``) or as ``Bearer sk-...``."""
    value = (header or "").strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        value = rest.strip()
    return value or None


@router.post(SUBMIT_PATH)
async def submit(request: Request) -> Response:
    """Submit a generation (contract section 1)."""
    sim = simulator_of(request)
    denied = _check_key(request, sim)
    if denied is not None:
        return denied
    try:
        params = parse_submit(await request.body())
        sim.log.note(entry_of(request), prompt=params.prompt)
        submission = sim.draw(params)
    except (InvalidRequest, UnknownFault) as exc:
        return error_response(ErrorSpec(400, str(exc), "invalid_request"))
    return await _accept(request, sim, params, submission)


@router.get(RESULT_PATH)
async def result(request: Request, prediction_id: str) -> Response:
    """Query a prediction (contract section 2); unknown ids answer 404."""
    sim = simulator_of(request)
    denied = _check_key(request, sim)
    if denied is not None:
        return denied
    if sim.config.poll_outage_status is not None:  # down: the prediction is not even looked up
        sim.log.note(entry_of(request), faults=["poll_outage"])
        spec = ErrorSpec(sim.config.poll_outage_status, "Service unavailable", "server_error")
        return error_response(spec)
    counted = sim.store.count_poll(prediction_id)
    if counted is None:
        return error_response(ErrorSpec(404, "Prediction not found", "not_found"))
    prediction, attempt = counted
    failing = _poll_fault(prediction.faults, attempt)
    if failing is not None:
        sim.log.note(entry_of(request), faults=[failing])
        return error_response(_POLL_ERRORS[failing])
    await sim.pause(sim.config.poll_delay_s)
    return JSONResponse(envelope(_current_data(request, sim, prediction)))


@router.get("/outputs/{prediction_id}/{index}.png")
async def download(request: Request, prediction_id: str, index: int) -> Response:
    """Download one output picture through its signed URL (contract section 4)."""
    sim = simulator_of(request)
    prediction, refusal = _find_output(request, sim, prediction_id, index)
    if prediction is None:
        return refusal or s3_error(404, "NoSuchKey", "The specified key does not exist.")
    applied = download_faults(prediction.faults, sim.store.count_download(prediction, index))
    sim.log.note(entry_of(request), faults=applied)
    if "output_expired" in applied:
        return expired_response(prediction.faults)
    data = await run_in_threadpool(sim.picture, prediction, index)
    return picture_response(
        data,
        applied=applied,
        faults=prediction.faults,
        default_rate=sim.config.slow_output_bytes_per_s,
        pause=sim.pause,
    )


def _check_key(request: Request, sim: Simulator) -> Response | None:
    key = api_key_from(request.headers.get("authorization"))
    if sim.config.accepts_key(key):
        return None
    message = "Invalid API key" if key else "Missing API key in the Authorization header"
    return error_response(ErrorSpec(401, message, "unauthorized"))


async def _accept(
    request: Request, sim: Simulator, params: SubmitParams, submission: Submission
) -> Response:
    entry = entry_of(request)
    rejection = next(iter(in_stage(submission.faults, Stage.SUBMIT)), None)
    if rejection is not None:
        sim.log.note(entry, faults=[rejection])
        return submit_error(rejection, submission.faults)
    if sim.config.balance_exhausted:
        sim.log.note(entry, faults=["balance_exhausted"])
        return submit_error("http_403", {})
    refusal = sim.limits.admit(sim.clock())
    if refusal is not None:  # over the account's rate or concurrency limit
        sim.log.note(entry, faults=[f"limit_{refusal.reason}"])
        return submit_error(refusal.fault, {refusal.fault: refusal.arg})
    prediction = sim.create_prediction(params, submission)
    sim.log.note(entry, prediction_id=prediction.id, faults=prediction.faults)
    return await _answer_submit(request, sim, prediction)


async def _answer_submit(request: Request, sim: Simulator, prediction: Prediction) -> Response:
    faults = prediction.faults
    if "ghost_500" in faults:
        code = faults["ghost_500"] or "500"
        return server_error(int(code) if code in _GHOST_STATUSES else 500)
    delay = sim.config.submit_delay_s
    if "ghost_slow" in faults:
        delay = number_arg(faults, "ghost_slow", sim.config.ghost_delay_s)
    await sim.pause(delay)
    status = "processing" if "submit_processing" in faults else "created"
    data = prediction_data(
        prediction, status=status, result_url=_result_url(request, prediction), outputs=[]
    )
    return JSONResponse(envelope(data))


def _poll_fault(faults: FaultSet, attempt: int) -> str | None:
    return next((name for name in _POLL_ERRORS if fires_on(faults, name, attempt)), None)


def _current_data(request: Request, sim: Simulator, prediction: Prediction) -> dict[str, object]:
    now = sim.clock()
    status = prediction.status_at(now)
    if prediction.is_done(now):
        sim.store.mark_done_seen(prediction, now)
    outputs = sim.output_urls(prediction, str(request.base_url)) if status == "completed" else []
    return prediction_data(
        prediction, status=status, result_url=_result_url(request, prediction), outputs=outputs
    )


def _find_output(
    request: Request, sim: Simulator, prediction_id: str, index: int
) -> tuple[Prediction | None, Response | None]:
    now = sim.clock()
    prediction = sim.store.get(prediction_id)
    if prediction is None or prediction.status_at(now) != "completed":
        return None, None
    if not 0 <= index < prediction.outcome.output_count:
        return None, None
    query = request.query_params
    problem = sim.signer.problem(
        output_path(prediction_id, index), query.get("Expires"), query.get("Signature"), now
    )
    if problem is not None:
        return None, s3_error(403, "AccessDenied", problem)
    return prediction, None


def _result_url(request: Request, prediction: Prediction) -> str:
    base = str(request.base_url).rstrip("/")
    return base + RESULT_PATH.format(prediction_id=prediction.id)
