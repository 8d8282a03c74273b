"""Reading CPU time and memory of processes from /proc (Linux), and machine facts."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    pid: int
    cpu_seconds: float
    """utime + stime of the process (threads included)."""


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in kB; empty when it is gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    except OSError:
        return {}
    return out


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find_processes(name: str, must_contain: str = "") -> list[int]:
    """PIDs whose executable name is ``name`` and whose command line contains ``must_contain``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        args = process_cmdline(pid)
        if not args or os.path.basename(args[0]) != name:
            continue
        if must_contain and not any(must_contain in arg for arg in args):
            continue
        found.append(pid)
    return sorted(found)


class CpuMeter:
    """CPU seconds used by named processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = {name: list(p) for name, p in pids.items() if p}
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.result: dict[str, float] = {}
        self.wall_seconds = 0.0

    def _read(self) -> dict[str, float]:
        return {
            name: sum(cpu_seconds(pid) or 0.0 for pid in pids) for name, pids in self.pids.items()
        }

    def start(self, now: float) -> None:
        self._start = self._read()
        self._wall = now

    def stop(self, now: float) -> dict[str, dict[str, float]]:
        end = self._read()
        self.wall_seconds = max(now - self._wall, 1e-9)
        self.result = {name: end[name] - self._start.get(name, 0.0) for name in end}
        return self.summary()

    def summary(self) -> dict[str, dict[str, float]]:
        """Per process: CPU seconds and share of one core over the window (1.0 = one full core)."""
        return {
            name: {"cpu_s": round(cpu, 3), "cores": round(cpu / self.wall_seconds, 3)}
            for name, cpu in self.result.items()
        }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, object]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_start": load_average(),
    }
