"""The bench's handler worker: one no-op action that records when each command arrived.

Run by the bench as ``python -m kubesaga worker bench.noop_worker:worker --app-dir <repo>``.
Environment:
    BENCH_ACTION        the action name to serve (one queue per bench phase)
    BENCH_TIMINGS_FILE  where to write the records at exit (JSON lines; ``.<pid>`` is appended)

Each record is ``[saga, step, attempt, received, returned]`` with ``time.monotonic()`` times, taken
when the handler is entered and when it returns. CLOCK_MONOTONIC is system-wide on Linux, so the
records of several worker processes on one machine can be compared with each other.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from typing import Any

from kubesaga import Worker
from kubesaga.worker.context import StepContext

ACTION = os.environ.get("BENCH_ACTION", "bench.noop")
TIMINGS_FILE = os.environ.get("BENCH_TIMINGS_FILE", "")
MAX_RECORDS = 2_000_000

worker = Worker("bench")
records: list[tuple[str, str, int, float, float]] = []


@worker.step(ACTION)
async def noop(ctx: StepContext) -> dict[str, Any]:
    received = time.monotonic()
    if len(records) < MAX_RECORDS:
        records.append((ctx.saga_name, ctx.step_name, ctx.attempt, received, time.monotonic()))
    return {}


def _dump() -> None:
    if not TIMINGS_FILE:
        return
    path = f"{TIMINGS_FILE}.{os.getpid()}"
    with open(path + ".part", "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    os.replace(path + ".part", path)


atexit.register(_dump)
