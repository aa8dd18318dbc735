"""The registry of fault modes, and how a submit chooses which ones apply to it.

A fault is chosen once per submit, in two ways:

- **per request**: the prompt contains ``[sim:NAME]`` or ``[sim:NAME=ARG]`` (several allowed), e.g.
  ``a cat [sim:http_500] [sim:urls_list]`` or ``a dog [sim:failed=1200]``;
- **per run**: the profile maps fault names to probabilities; each fault fires for a submit with
  its probability, drawn from the prediction's seeded RNG.

Faults of the ``submit`` stage reject the submit, so nothing is created. All others are stored on
the prediction they shaped and act when the stage they name happens (the answer to the submit, the
outcome, a poll, the JSON, a download). Transient ones (``poll_*``, ``output_truncated``) take a
count ARG: how many polls or downloads misbehave before the next one works, or ``always``.

Adding a fault: ``_register`` it here, then implement it where its stage is handled
(``wire.py`` for submit errors and schema drift, ``state.py`` for outcomes, ``app.py`` for ghosts
and polls, ``outputs.py`` for downloads).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Where a fault acts."""

    SUBMIT = "submit"  #: the submit is rejected; no prediction exists
    GHOST = "ghost"  #: the prediction is created, then the submit is answered badly
    OUTCOME = "outcome"  #: how the prediction ends
    POLL = "poll"  #: transient errors when the prediction is polled
    WIRE = "wire"  #: schema drift in the prediction JSON
    OUTPUT = "output"  #: behaviour of the output download URLs
    CONTROL = "control"  #: changes how the other chosen faults apply


@dataclass(frozen=True)
class Fault:
    """One named misbehaviour of the provider."""

    name: str
    stage: Stage
    summary: str
    default_arg: str | None = None


class UnknownFault(ValueError):
    """A fault name that is not in the registry."""


#: Chosen faults of one prediction: name -> ARG (None when the token had none), in choice order.
FaultSet = dict[str, str | None]

FAULTS: dict[str, Fault] = {}
ALWAYS = "always"
_TOKEN = re.compile(r"\[sim:([a-z0-9_]+)(?:=([^\]\s]+))?\]")


def _register(name: str, stage: Stage, summary: str, default_arg: str | None = None) -> None:
    FAULTS[name] = Fault(name, stage, summary, default_arg)


_register("http_401", Stage.SUBMIT, "401: the key is rejected")
_register("http_403", Stage.SUBMIT, "403 insufficient balance (ARG 'permission': no permission)")
_register("http_429", Stage.SUBMIT, "429 rate limit; ARG n adds 'Retry-After: n'")
_register("http_429_retry_after", Stage.SUBMIT, "429 rate limit with 'Retry-After: ARG'", "1")
_register("http_500", Stage.SUBMIT, "500 with a JSON body (ARG html|json picks the body)")
_register("http_502", Stage.SUBMIT, "502 with an nginx HTML body (ARG html|json)")
_register("http_503", Stage.SUBMIT, "503 with a JSON body (ARG html|json)")
_register("http_504", Stage.SUBMIT, "504 with an nginx HTML body (ARG html|json)")
_register("content_policy", Stage.SUBMIT, "400, type '503': 'Input may not meet the guidelines'")
_register("invalid_params", Stage.SUBMIT, "400 invalid parameters")
_register("ghost_500", Stage.GHOST, "creates the prediction, then answers 5xx (ARG: status)", "500")
_register("ghost_slow", Stage.GHOST, "creates the prediction, answers after ARG s (ghost_delay_s)")
_register("failed", Stage.OUTCOME, "ends 'failed'; ARG is the error text or numeric code")
_register("stuck", Stage.OUTCOME, "never leaves 'processing'")
_register("no_output", Stage.OUTCOME, "'completed' with an empty outputs list")
_register("multi_output", Stage.OUTCOME, "completes with ARG outputs", "2")
_register("nsfw", Stage.OUTCOME, "has_nsfw_contents is [true, ...]")
_register("poll_500", Stage.POLL, "the first ARG polls answer 500", "1")
_register("poll_429", Stage.POLL, "the first ARG polls answer 429", "1")
_register("urls_list", Stage.WIRE, "urls is [{'get': ...}] instead of {'get': ...}")
_register("error_empty", Stage.WIRE, "error is '' instead of null")
_register("date_rfc3339", Stage.WIRE, "created_at is RFC 3339 with nanoseconds")
_register("nsfw_null", Stage.WIRE, "has_nsfw_contents is null")
_register("nsfw_empty", Stage.WIRE, "has_nsfw_contents is [] even when completed")
_register(
    "status_alias",
    Stage.WIRE,
    "status aliases; ARG a: queueing/in_progress/success/error, "
    "b: pending/processing/succeeded/failed",
    "a",
)
_register("submit_processing", Stage.WIRE, "the submit answer says 'processing', not 'created'")
_register("output_expired", Stage.OUTPUT, "downloads answer ARG (403 or 404)", "404")
_register("output_slow", Stage.OUTPUT, "downloads trickle at ARG bytes/s (slow_output_bytes_per_s)")
_register("output_truncated", Stage.OUTPUT, "the first ARG downloads stop half way", "1")
_register(
    "recover_after",
    Stage.CONTROL,
    "submit and ghost faults apply to the first ARG submits of this prompt only",
    "1",
)
_register("output_mislabelled", Stage.OUTPUT, "downloads carry Content-Type ARG", "image/jpeg")

#: Named profiles; a profile string may start from one of these and override single faults.
PRESETS: dict[str, dict[str, float]] = {
    "clean": {},
    "flaky": {
        "http_500": 0.03,
        "http_502": 0.02,
        "http_429_retry_after": 0.03,
        "ghost_500": 0.01,
        "poll_500": 0.03,
        "poll_429": 0.03,
        "output_truncated": 0.02,
    },
    "drift": {
        "urls_list": 0.3,
        "error_empty": 0.3,
        "date_rfc3339": 0.3,
        "nsfw_null": 0.2,
        "status_alias": 0.2,
        "submit_processing": 0.2,
        "output_mislabelled": 0.1,
    },
    "hostile": {
        "http_500": 0.05,
        "http_503": 0.03,
        "http_429": 0.05,
        "ghost_500": 0.02,
        "ghost_slow": 0.01,
        "failed": 0.05,
        "no_output": 0.02,
        "stuck": 0.01,
        "poll_500": 0.05,
        "output_truncated": 0.03,
        "output_expired": 0.01,
    },
}


def parse_tokens(prompt: str) -> FaultSet:
    """The faults a prompt forces, in the order they appear; unknown names raise UnknownFault."""
    forced: FaultSet = {}
    for match in _TOKEN.finditer(prompt):
        name, arg = match.group(1), match.group(2)
        if name not in FAULTS:
            raise UnknownFault(f"unknown simulator fault token [sim:{name}]")
        forced.setdefault(name, arg)
    return forced


def parse_profile(spec: str) -> dict[str, float]:
    """Parse ``flaky,http_500=0.2,stuck=0.01``: presets and ``name=probability`` items, merged."""
    profile: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        if item in PRESETS:
            profile.update(PRESETS[item])
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is neither a preset ({', '.join(PRESETS)}) nor name=prob")
        profile[name.strip()] = float(value)
    return check_profile(profile)


def check_profile(profile: dict[str, float]) -> dict[str, float]:
    """Return the profile if every name is registered and every probability is in [0, 1]."""
    for name, probability in profile.items():
        if name not in FAULTS:
            raise UnknownFault(f"unknown fault {name!r}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability of {name!r} must be between 0 and 1")
    return profile


def choose_faults(prompt: str, profile: dict[str, float], rng: random.Random) -> FaultSet:
    """Faults forced by the prompt's tokens, then those the profile draws for this submit."""
    chosen = parse_tokens(prompt)
    for name, probability in profile.items():
        # Draw for every entry, forced or not, so one token does not shift the other draws.
        fired = rng.random() < probability
        if fired and name not in chosen:
            chosen[name] = None
    return chosen


def recovered(faults: FaultSet, submits_so_far: int) -> FaultSet:
    """Drop submit and ghost faults once a ``recover_after=N`` prompt was submitted N times."""
    if "recover_after" not in faults or submits_so_far <= _int_arg(
        arg_of(faults, "recover_after"), 1
    ):
        return faults
    transient = (Stage.SUBMIT, Stage.GHOST)
    return {name: arg for name, arg in faults.items() if FAULTS[name].stage not in transient}


def arg_of(faults: FaultSet, name: str) -> str | None:
    """The ARG a chosen fault carries, or its registered default."""
    arg = faults.get(name)
    return arg if arg is not None else FAULTS[name].default_arg


def in_stage(faults: FaultSet, stage: Stage) -> list[str]:
    """Names of the chosen faults that act at ``stage``, in choice order."""
    return [name for name in faults if FAULTS[name].stage is stage]


def fires_on(faults: FaultSet, name: str, attempt: int) -> bool:
    """Whether a counted fault misbehaves on the ``attempt``-th (1-based) poll or download."""
    if name not in faults:
        return False
    arg = arg_of(faults, name)
    if arg == ALWAYS:
        return True
    return attempt <= _int_arg(arg, default=1)


def number_arg(faults: FaultSet, name: str, default: float) -> float:
    """A numeric ARG (seconds, bytes per second), or ``default`` when absent or not a number."""
    try:
        return float(arg_of(faults, name) or default)
    except ValueError:
        return default


def _int_arg(arg: str | None, default: int) -> int:
    try:
        return int(arg) if arg is not None else default
    except ValueError:
        return default
