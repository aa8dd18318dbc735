"""Sampling profiles of processes during a measured window (``python -m bench run --profile``).

Uses py-spy (``pip install py-spy``; it is not a dependency of the project) with ``--gil``:
only the thread holding the GIL is sampled, so the samples say where the process's Python time
goes (a threaded worker runs one thread at a time), not where its threads wait. Its raw format
has one line per distinct stack, frames separated by ``;``, then the sample count. The summary
lists each function's own samples (the leaf of the stack) and its inclusive share (anywhere on
the stack).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_SITE = re.compile(r".*/site-packages/|.*/lib/python3\.\d+/")


def binary() -> str | None:
    """py-spy beside this Python (the venv), else on the PATH; None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` on each of ``pids`` while the ``with`` block runs."""

    def __init__(self, folder: Path, pids: dict[str, int], *, rate_hz: int = 100) -> None:
        self._binary = binary()
        self.files = {name: folder / f"profile-{name}.txt" for name in pids}
        self._pids = pids
        self._rate = rate_hz
        self._procs: list[subprocess.Popen[bytes]] = []
        folder.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Profiler:
        for name, pid in self._pids.items() if self._binary else ():
            self._procs.append(
                subprocess.Popen(
                    [
                        str(self._binary),
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(self._rate),
                        "--format",
                        "raw",
                        "--output",
                        str(self.files[name]),
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for proc in self._procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def summary(self, top: int = 25) -> dict[str, Any]:
        """Per profiled process: samples, and the top functions by own and inclusive share."""
        found = {}
        for name, path in self.files.items():
            if path.exists():
                found[name] = summarize(path.read_text().splitlines(), top)
        return found


def summarize(lines: Iterable[str], top: int) -> dict[str, Any]:
    """Own and inclusive sample shares per function, from py-spy's raw lines."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [function_of(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "own_percent": [(name, share(n)) for name, n in own.most_common(top)],
        "inclusive_percent": [(name, share(n)) for name, n in inclusive.most_common(top)],
    }


def function_of(frame: str) -> str:
    """``name (module path)`` without line numbers or the site-packages prefix."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['name']} ({_SITE.sub('', match['file'])})"
