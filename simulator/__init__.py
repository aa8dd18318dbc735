"""A local stand-in for the GPTProto ``viduq2`` text-to-image API, over real HTTP.

It speaks the provider contract (``docs/provider-contract.md``), renders real PNGs of the right
size, reproduces the provider's failure modes on demand (``simulator.faults``), and records every
request it receives so tests can count them (admin API under ``/_sim/``).

Typical use in tests::

    with serve_in_thread(SimulatorConfig(latency=instant_latency(), queue_s=0)) as sim:
        client = httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer sk-test"})
"""

from simulator.app import create_app
from simulator.config import LatencyRange, SimulatorConfig, instant_latency, parse_latency
from simulator.faults import FAULTS, PRESETS, parse_profile, parse_tokens
from simulator.images import image_size, render_png
from simulator.runtime import Simulator
from simulator.server import RunningSimulator, run, serve_in_thread

__all__ = [
    "FAULTS",
    "PRESETS",
    "LatencyRange",
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "create_app",
    "image_size",
    "instant_latency",
    "parse_latency",
    "parse_profile",
    "parse_tokens",
    "render_png",
    "run",
    "serve_in_thread",
]
