"""A handler worker whose behaviour each step's input scripts, with a ledger of what ran.

Step input keys (all optional):
  fail:      "permanent" | "retryable" | "retryable-once" (only attempt 1 fails)
  hang:      list of attempts that never answer (their timeout must end them)
  sleep:     seconds the handler takes
  meet:      a rendezvous name: the handler waits until ``meet_count`` handlers arrived
  undo_fail: "permanent" | "retryable" (the compensation always fails)
Actions are named ``<prefix>.do`` / ``<prefix>.undo`` so every test has queues of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kubesaga import PermanentError, RetryableError, StepContext, Worker


@dataclass(frozen=True)
class Entry:
    kind: str  # "do" or "undo"
    event: str  # "start" or "end"
    saga: str
    step: str
    attempt: int
    dispatch_id: str
    at: float


@dataclass
class Ledger:
    entries: list[Entry] = field(default_factory=list)
    rendezvous: dict[str, asyncio.Event] = field(default_factory=dict)
    arrivals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    signals: dict[tuple[str, str, str, str], asyncio.Event] = field(default_factory=dict)
    """(kind, event, saga, step) -> set once such an entry was recorded; see ``wait_for``."""

    def record(self, kind: str, event: str, ctx: StepContext) -> None:
        self.entries.append(
            Entry(
                kind,
                event,
                ctx.saga_name,
                ctx.step_name,
                ctx.attempt,
                ctx.dispatch_id,
                time.monotonic(),
            )
        )
        self._signal(kind, event, ctx.saga_name, ctx.step_name).set()

    def _signal(self, kind: str, event: str, saga: str, step: str) -> asyncio.Event:
        return self.signals.setdefault((kind, event, saga, step), asyncio.Event())

    async def wait_for(
        self, saga: str, step: str, *, kind: str = "do", event: str = "start", timeout: float = 60
    ) -> Entry:
        """Wait (on an event, not by polling) until ``step`` of ``saga`` reached ``event``."""
        async with asyncio.timeout(timeout):
            await self._signal(kind, event, saga, step).wait()
        return next(
            e
            for e in self.entries
            if (e.kind, e.event, e.saga, e.step) == (kind, event, saga, step)
        )

    def dispatch_ids(self, saga: str, step: str, kind: str = "do") -> list[str]:
        """Dispatch ids of every start of the step's handler of ``kind``, in order."""
        return [
            e.dispatch_id
            for e in self.entries
            if e.kind == kind and e.event == "start" and e.saga == saga and e.step == step
        ]

    def steps(self, kind: str, saga: str, event: str = "end") -> list[str]:
        """Steps of ``saga`` whose handler of ``kind`` reached ``event``, in order."""
        return [
            e.step for e in self.entries if e.kind == kind and e.saga == saga and e.event == event
        ]

    def attempts(self, saga: str, step: str) -> list[int]:
        return [
            e.attempt
            for e in self.entries
            if e.kind == "do" and e.event == "start" and e.saga == saga and e.step == step
        ]


def scripted_worker(prefix: str) -> tuple[Worker, Ledger]:
    worker = Worker(f"scripted-{prefix}")
    ledger = Ledger()

    @worker.step(f"{prefix}.do")
    async def do(ctx: StepContext) -> dict[str, Any]:
        ledger.record("do", "start", ctx)
        script = ctx.input
        if ctx.attempt in script.get("hang", []):
            await asyncio.sleep(3600)
        if "sleep" in script:
            await asyncio.sleep(float(script["sleep"]))
        if "meet" in script:
            name = str(script["meet"])
            event = ledger.rendezvous.setdefault(name, asyncio.Event())
            ledger.arrivals[name] += 1
            if ledger.arrivals[name] >= int(script.get("meet_count", 2)):
                event.set()
            async with asyncio.timeout(10):  # not parallel: the rendezvous never completes
                await event.wait()
        fail = script.get("fail")
        if fail == "permanent":
            raise PermanentError(f"{ctx.step_name} refused", type="Refused")
        if fail == "retryable" or (fail == "retryable-once" and ctx.attempt == 1):
            after = script.get("retry_after")
            raise RetryableError(
                f"{ctx.step_name} briefly unavailable",
                retry_after=None if after is None else float(after),
            )
        ledger.record("do", "end", ctx)
        return {
            "step": ctx.step_name,
            "attempt": ctx.attempt,
            "seen": sorted(ctx.dependency_outputs),
        }

    @worker.compensation(f"{prefix}.undo")
    async def undo(ctx: StepContext) -> None:
        ledger.record("undo", "start", ctx)
        fail = ctx.input.get("undo_fail")
        if fail == "permanent":
            raise PermanentError(f"cannot undo {ctx.step_name}")
        if fail == "retryable":
            raise RetryableError(f"undo of {ctx.step_name} unavailable")
        assert ctx.step_output is not None or ctx.input.get("compensate_on_failure")
        ledger.record("undo", "end", ctx)

    return worker, ledger


def step(prefix: str, name: str, **kw: Any) -> dict[str, Any]:
    """A step of the scripted worker; keyword arguments other than spec fields go to input."""
    spec_keys = {"dependsOn", "retry", "timeoutSeconds", "compensateOnFailure", "compensation"}
    entry: dict[str, Any] = {
        "name": name,
        "action": f"{prefix}.do",
        "compensation": f"{prefix}.undo",
        "input": {k: v for k, v in kw.items() if k not in spec_keys},
    }
    entry.update({k: v for k, v in kw.items() if k in spec_keys})
    return entry
