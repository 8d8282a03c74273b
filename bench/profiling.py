"""Sampling the operator process with py-spy (optional: ``pip install py-spy``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RATE_HZ = 100
TOP = 15
IDLE_LEAVES = ("_worker (futures/thread.py)", "EpollSelector.select (selectors.py)")
"""Leaf frames of a thread waiting for work (py-spy may not see these as idle)."""
_LINE = re.compile(r":\d+\)$")


@dataclass
class Profiler:
    process: asyncio.subprocess.Process
    output: Path


async def start(pid: int, output: Path) -> Profiler | None:
    """``py-spy record --format raw`` on ``pid`` until ``stop``; None when py-spy is missing."""
    exe = shutil.which("py-spy")
    if exe is None:
        return None
    process = await asyncio.create_subprocess_exec(
        exe,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(RATE_HZ),
        "--format",
        "raw",
        "--output",
        str(output),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)  # let it attach before the measured window starts
    return Profiler(process, output)


async def stop(profiler: Profiler) -> dict[str, Any] | None:
    if profiler.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            profiler.process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(profiler.process.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                profiler.process.kill()
            await profiler.process.wait()
    if not profiler.output.exists():
        return None
    return summarize(profiler.output.read_text(errors="replace"))


def _frame(text: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: one entry per function."""
    text = _LINE.sub(")", text.strip())
    if "(" in text:
        name, _, where = text.partition(" (")
        where = where.rstrip(")")
        parts = where.split("/")
        short = "/".join(parts[-2:]) if len(parts) > 1 else where
        return f"{name} ({short})"
    return text


def _bucket(stack: list[str]) -> str:
    """Which area a sample belongs to, by the innermost frame of a known library or ours."""
    areas = (
        ("kubesaga/", "kubesaga"),
        ("kubernetes_asyncio/", "kubernetes_asyncio (API client, (de)serialisation)"),
        ("kopf/", "kopf (watch stream, event dispatch)"),
        ("aiohttp/", "aiohttp (HTTP)"),
        ("aiormq/", "aiormq/aio_pika (AMQP)"),
        ("aio_pika/", "aiormq/aio_pika (AMQP)"),
        ("pamqp/", "aiormq/aio_pika (AMQP)"),
        ("pydantic", "pydantic (models)"),
        ("json/", "json"),
        ("logging/", "logging"),
        ("ssl.py", "ssl"),
        ("asyncio/", "asyncio (event loop)"),
        ("prometheus_client/", "prometheus_client"),
    )
    for frame in reversed(stack):
        for needle, name in areas:
            if needle in frame:
                return name
    return "other"


def _activity(frames: list[str]) -> str:
    """What the event loop was running: the first frame below the loop's callback runner."""
    if frames and frames[0].startswith("Thread._bootstrap"):
        return f"(thread) {frames[-1]}"
    start = max(
        (
            i
            for i, f in enumerate(frames)
            if f.startswith(("Handle._run ", "BaseEventLoop._run_once "))
        ),
        default=-1,
    )
    for frame in frames[start + 1 :]:
        if "(asyncio/" in frame or "(sslproto" in frame or frame.endswith("(ssl.py)"):
            continue
        return frame
    return f"(event loop) {frames[-1]}" if frames else "?"


def summarize(raw: str, top: int = TOP) -> dict[str, Any]:
    """Top functions by own samples and by inclusive samples, and shares by area."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = idle = 0
    activities: Counter[str] = Counter()
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [
            f for f in stack_text.split(";") if f and not f.startswith(("process ", "thread "))
        ]
        if not raw_frames:
            continue
        frames = [_frame(f) for f in raw_frames]
        if frames[-1] in IDLE_LEAVES:
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        areas[_bucket(raw_frames)] += count
        activities[_activity(frames)] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [
            [name, count, round(100.0 * count / total, 1)]
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "idle_samples": idle,
        "rate_hz": RATE_HZ,
        "by_activity": share(activities),
        "by_area": share(areas),
        "top_self": share(own),
        "top_inclusive": share(inclusive),
    }
