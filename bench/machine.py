"""The machine and its processes, read from /proc: what it is, who used the CPU, how much memory.

On a 2-core machine shared with other work, knowing where the CPU went during a run says what
bounds a figure: the workers, the stand-ins (simulator, moto), Postgres, Redis, or someone else.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


def describe(*, postgres_version: str, redis_version: str) -> dict[str, object]:
    """CPU count and model, memory, kernel, Python, Postgres and Redis versions, load."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_meminfo_kib("MemTotal") / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": postgres_version,
        "redis": redis_version,
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "executable": sys.executable,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    values = [int(v) for v in (_PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS, sum(values[:8]) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The high-water mark of the resident set (since start or the last :func:`reset_peak`)."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak(pid: int) -> None:
    """Start the peak RSS over from the current RSS (Linux ``clear_refs``)."""
    (_PROC / str(pid) / "clear_refs").write_text("5")


def pids_named(names: Iterable[str]) -> dict[int, str]:
    """Running processes whose command name is one of ``names``."""
    wanted = set(names)
    found: dict[int, str] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in wanted:
                found[int(entry.name)] = comm
    return found


@dataclass
class CpuMeter:
    """CPU seconds used during a window by named groups of processes, and by the machine.

    ``groups`` maps a label to pids; ``by_name`` adds processes found by command name at each
    reading (Postgres backends come and go), counted only for what they used in the window."""

    groups: dict[str, list[int]] = field(default_factory=dict)
    by_name: tuple[str, ...] = ("postgres", "redis-server")
    _start: dict[str, float] = field(default_factory=dict)
    _named_start: dict[int, float] = field(default_factory=dict)
    _machine_start: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        self._start = {label: sum(map(cpu_seconds, pids)) for label, pids in self.groups.items()}
        self._named_start = {pid: cpu_seconds(pid) for pid in pids_named(self.by_name)}
        self._machine_start = machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        """Seconds per group, per named command, ``others`` and the machine's busy share."""
        used = {
            label: round(sum(map(cpu_seconds, pids)) - self._start[label], 2)
            for label, pids in self.groups.items()
        }
        for pid, comm in pids_named(self.by_name).items():
            spent = cpu_seconds(pid) - self._named_start.get(pid, 0.0)
            used[comm] = round(used.get(comm, 0.0) + spent, 2)
        busy, total = machine_busy_seconds()
        machine_busy = busy - self._machine_start[0]
        used["others"] = round(max(machine_busy - sum(used.values()), 0.0), 2)
        used["machine_busy"] = round(machine_busy, 2)
        used["machine_busy_share"] = round(
            machine_busy / max(total - self._machine_start[1], 1e-9), 3
        )
        return used


def _status_kib(pid: int, key: str) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _meminfo_kib(key: str) -> int:
    for line in (_PROC / "meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    for line in (_PROC / "cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
