"""Running the simulator: in the foreground (CLI) or in a background thread (tests, the demo)."""

from __future__ import annotations

import logging
import socket
import threading
from types import TracebackType

import uvicorn

from simulator.app import create_app
from simulator.config import SimulatorConfig
from simulator.outputs import QuietTruncation
from simulator.runtime import Clock, Simulator

_STARTUP_TIMEOUT_S = 10.0
# Paused requests (ghost_slow, slow downloads) end as soon as a stop begins; this only bounds
# the wait for anything else still running.
_GRACEFUL_SHUTDOWN_S = 2


def run(host: str, port: int, config: SimulatorConfig, *, log_level: str = "info") -> None:
    """Serve the simulator until interrupted (Ctrl+C)."""
    simulator = Simulator(config)
    _quiet_truncations()
    _Server(simulator, _uvicorn_config(simulator, host, port, log_level=log_level)).run()


class _Server(uvicorn.Server):
    """A uvicorn server that ends the simulator's long pauses when it shuts down, so requests
    held by ghost_slow or a slow download are answered instead of cancelled."""

    def __init__(self, simulator: Simulator, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.simulator = simulator

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Wake paused requests, then shut down as uvicorn does."""
        self.simulator.stopping.set()
        await super().shutdown(sockets)


class RunningSimulator:
    """A simulator serving from a background thread; a context manager that stops it on exit."""

    def __init__(self, simulator: Simulator, server: uvicorn.Server, sock: socket.socket) -> None:
        self.simulator = simulator
        self._server = server
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.host, self.port = str(host), int(port)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="simulator", daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no trailing slash), to use as the provider's base URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> RunningSimulator:
        """Start serving and wait until the server accepts connections."""
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > _STARTUP_TIMEOUT_S:
                self._socket.close()
                raise RuntimeError("the simulator did not start")
            self._thread.join(0.01)
            waited += 0.01
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving; requests still waiting on a long fault are answered at once."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._socket.close()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock | None = None,
) -> RunningSimulator:
    """Start a simulator in a daemon thread; ``port=0`` picks a free port (see ``.base_url``)."""
    simulator = Simulator(config, clock=clock)
    sock = _listening_socket(host, port)
    server = _Server(
        simulator, _uvicorn_config(simulator, host, port, log_level="warning", own_logging=False)
    )
    _quiet_truncations()
    return RunningSimulator(simulator, server, sock).start()


def _listening_socket(host: str, port: int) -> socket.socket:
    # Binding here rather than in uvicorn gives the real port before the thread starts. The
    # explicit IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it every response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _uvicorn_config(
    simulator: Simulator, host: str, port: int, *, log_level: str, own_logging: bool = True
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(simulator=simulator),
        host=host,
        port=port,
        log_level=log_level,
        # In a host process (tests, the demo) leave its logging configuration alone.
        log_config=uvicorn.config.LOGGING_CONFIG if own_logging else None,
        access_log=own_logging,
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )


def _quiet_truncations() -> None:
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, QuietTruncation) for existing in error_log.filters):
        error_log.addFilter(QuietTruncation())
