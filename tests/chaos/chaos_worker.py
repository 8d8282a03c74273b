"""The chaos suite's handler worker, run as ``kubesaga worker tests.chaos.chaos_worker:worker``.

Configured from the environment so each run has queues of its own:
  KUBESAGA_CHAOS_PREFIX      action names are ``<prefix>.do`` and ``<prefix>.undo``
  KUBESAGA_CHAOS_LEDGER_DIR  each process appends JSON lines to ``<dir>/worker-<pid>.jsonl``

Every handler run appends a ``start`` line, then ``end`` (success) or ``fail``; a process killed
mid-step leaves a ``start`` without either. Lines are written with one ``os.write`` on an
``O_APPEND`` descriptor, so a SIGKILL never leaves half a line behind.

Step input (all optional):
  sleep       seconds the action takes (so that kills land mid-step)
  fail        "permanent" | "retryable-once" (attempt 1 fails retryably)
  undo_sleep  seconds the compensation takes
  undo_flaky  true: compensation attempt 1 fails retryably
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from kubesaga import PermanentError, RetryableError, StepContext, Worker

PREFIX = os.environ.get("KUBESAGA_CHAOS_PREFIX", "chaos")
LEDGER_DIR = os.environ.get("KUBESAGA_CHAOS_LEDGER_DIR", ".")

worker = Worker(f"chaos-{PREFIX}")
_fd: int | None = None


def _ledger(kind: str, event: str, ctx: StepContext, started: float, **extra: Any) -> None:
    global _fd
    if _fd is None:
        path = os.path.join(LEDGER_DIR, f"worker-{os.getpid()}.jsonl")
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    entry = {
        "kind": kind,
        "event": event,
        "saga": ctx.saga_name,
        "uid": ctx.saga_uid,
        "step": ctx.step_name,
        "attempt": ctx.attempt,
        "dispatch_id": ctx.dispatch_id,
        "dispatched_at": ctx.dispatched_at.isoformat() if ctx.dispatched_at else None,
        "start": started,
        "at": time.time(),
        "pid": os.getpid(),
        **extra,
    }
    os.write(_fd, (json.dumps(entry) + "\n").encode())


@worker.step(f"{PREFIX}.do")
async def do(ctx: StepContext) -> dict[str, Any]:
    started = time.time()
    _ledger("execute", "start", ctx, started)
    await asyncio.sleep(float(ctx.input.get("sleep", 0)))
    fail = ctx.input.get("fail")
    if fail == "permanent":
        _ledger("execute", "fail", ctx, started)
        raise PermanentError(f"{ctx.step_name} refused", type="Refused")
    if fail == "retryable-once" and ctx.attempt == 1:
        _ledger("execute", "fail", ctx, started)
        raise RetryableError(f"{ctx.step_name} briefly unavailable")
    _ledger("execute", "end", ctx, started)
    return {"step": ctx.step_name, "attempt": ctx.attempt, "seen": sorted(ctx.dependency_outputs)}


@worker.compensation(f"{PREFIX}.undo")
async def undo(ctx: StepContext) -> None:
    started = time.time()
    _ledger("compensate", "start", ctx, started)
    await asyncio.sleep(float(ctx.input.get("undo_sleep", 0)))
    if ctx.input.get("undo_flaky") and ctx.attempt == 1:
        _ledger("compensate", "fail", ctx, started)
        raise RetryableError(f"undo of {ctx.step_name} briefly unavailable")
    if ctx.step_output is None or ctx.step_output.get("step") != ctx.step_name:
        _ledger("compensate", "fail", ctx, started, why="no output of its own step")
        raise PermanentError(f"compensation of {ctx.step_name} did not get the step's output")
    _ledger("compensate", "end", ctx, started)
