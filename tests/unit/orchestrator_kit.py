"""An in-memory platform for the orchestrator: a store, a broker and clocks, nothing started.

``MemoryStore`` behaves like the apiserver where the orchestrator depends on it: every write
bumps ``metadata.resourceVersion``, a status replace that carries an older one is refused with
``Conflict`` (409), a delete with a uid precondition that does not match is refused with
``Conflict``, and every change is delivered to each subscriber's watch stream. ``FakeClock``
moves only when told (or when the code under test sleeps), so timers fire deterministically.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesaga.models import Command, CommandKind, ErrorInfo, Result
from kubesaga.operator import Orchestrator
from kubesaga.store import Conflict, NotFound, SagaObject

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NS = "default"
SETTLE_ROUNDS = 200


# -- clocks ---------------------------------------------------------------------------------


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Wall and monotonic time that advance together, only through ``advance`` or ``sleep``."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0
        self.slept: list[float] = []
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> int:
        """Move both clocks on, firing due timers in order (each at its own time).

        ``advance(0)`` fires timers armed for now or earlier, as the event loop would at once.
        """
        until = self.mono + seconds
        fired = 0
        while self._timers and self._timers[0].when <= until:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._set(max(timer.when, self.mono))
            timer.callback()
            fired += 1
        self._set(until)
        return fired

    def pending(self) -> list[float]:
        """Monotonic times of the armed timers, soonest first."""
        return sorted(t.when for t in self._timers if not t.cancelled)

    def _set(self, mono: float) -> None:
        self.wall += timedelta(seconds=mono - self.mono)
        self.mono = mono


# -- the store ------------------------------------------------------------------------------


class MemoryStore:
    """Sagas in a dict, with the apiserver's optimistic concurrency and a watch per subscriber."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.revision = 0
        self.watches: list[list[tuple[str, SagaObject]]] = []
        self.status_writes = 0
        self.conflicts = 0
        self.interfere_next = 0
        """Writes by "someone else" to slip in before the next status replaces (causes 409s)."""
        self.delete_errors: list[Exception] = []
        """Raised by the next deletes, in order, before anything is deleted."""
        self.deleted: list[tuple[str, str]] = []
        self.write_gate: asyncio.Event | None = None
        """When set, status replaces wait for it (to queue results while a write is in flight)."""
        self.writes_waiting = 0

    def watch(self) -> list[tuple[str, SagaObject]]:
        """A new watch stream: each later change is appended as (ADDED|MODIFIED|DELETED, copy)."""
        stream: list[tuple[str, SagaObject]] = []
        self.watches.append(stream)
        return stream

    def create(self, name: str, spec: Mapping[str, Any], namespace: str = NS) -> SagaObject:
        self.revision += 1
        raw: dict[str, Any] = {
            "metadata": {
                "namespace": namespace,
                "name": name,
                "uid": f"uid-{name}-{self.revision}",
                "generation": 1,
                "resourceVersion": str(self.revision),
            },
            "spec": copy.deepcopy(dict(spec)),
        }
        self.objects[(namespace, name)] = raw
        return self._emit("ADDED", raw)

    def status(self, name: str, namespace: str = NS) -> dict[str, Any]:
        return dict(self.objects[(namespace, name)].get("status") or {})

    async def get(self, namespace: str, name: str) -> SagaObject:
        await asyncio.sleep(0)
        raw = self.objects.get((namespace, name))
        if raw is None:
            raise NotFound(name)
        return SagaObject(copy.deepcopy(raw))

    async def replace_status(self, saga: SagaObject, status: Mapping[str, Any]) -> SagaObject:
        if self.write_gate is not None:
            self.writes_waiting += 1
            await self.write_gate.wait()
            self.writes_waiting -= 1
        await asyncio.sleep(0)
        raw = self.objects.get(saga.key)
        if raw is None:
            raise NotFound(saga.name)
        if self.interfere_next:
            self.interfere_next -= 1
            self._bump(raw)  # e.g. a label change by someone else
            self._emit("MODIFIED", raw)
        if raw["metadata"]["resourceVersion"] != saga.resource_version:
            self.conflicts += 1
            raise Conflict("the object has been modified")
        raw["status"] = copy.deepcopy(dict(status))
        self._bump(raw)
        self.status_writes += 1
        return self._emit("MODIFIED", raw)

    async def delete(self, namespace: str, name: str, uid: str | None = None) -> None:
        await asyncio.sleep(0)
        if self.delete_errors:
            raise self.delete_errors.pop(0)
        raw = self.objects.get((namespace, name))
        if raw is None:
            raise NotFound(name)
        if uid is not None and raw["metadata"]["uid"] != uid:
            raise Conflict("Precondition failed: UID in precondition")
        del self.objects[(namespace, name)]
        self.deleted.append((namespace, name))
        self._emit("DELETED", raw)

    def _bump(self, raw: dict[str, Any]) -> None:
        self.revision += 1
        raw["metadata"]["resourceVersion"] = str(self.revision)

    def _emit(self, kind: str, raw: dict[str, Any]) -> SagaObject:
        for stream in self.watches:
            stream.append((kind, SagaObject(copy.deepcopy(raw))))
        return SagaObject(copy.deepcopy(raw))


def deliver(stream: list[tuple[str, SagaObject]], orchestrator: Orchestrator) -> int:
    """Hand what the watch stream holds to the orchestrator, as ``handlers.py`` does."""
    count = len(stream)
    for kind, obj in stream:
        if kind == "DELETED":
            orchestrator.vanished(obj)
        else:
            orchestrator.observe(obj)
    stream.clear()
    return count


# -- the broker -----------------------------------------------------------------------------


class RecordingBroker:
    """Keeps every published command; can fail publishes or hold them until released."""

    def __init__(self) -> None:
        self.published: list[Command] = []
        self.fail_next = 0
        self.hold: asyncio.Event | None = None
        self.held = 0

    async def publish_command(self, command: Command) -> None:
        if self.hold is not None:
            self.held += 1
            await self.hold.wait()
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker connection lost")
        self.published.append(command)

    def sent(self, step: str, kind: CommandKind = CommandKind.EXECUTE) -> list[Command]:
        return [c for c in self.published if c.step == step and c.kind is kind]

    def dispatch_ids(self) -> list[str]:
        return [c.dispatch_id for c in self.published]


def succeeded(command: Command) -> Result:
    return Result.answering(command, output={"done": command.step})


def failed(command: Command, retryable: bool = False) -> Result:
    return Result.answering(
        command, error=ErrorInfo(message="boom", type="Error", retryable=retryable)
    )


# -- driving --------------------------------------------------------------------------------


class Rig:
    """One store, one broker, one clock and any number of orchestrators sharing them."""

    def __init__(self, replicas: int = 1, redeliver_after: float = 300.0) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore()
        self.broker = RecordingBroker()
        self.rand = 0.5
        tokens = itertools.count()
        self.orchestrators = [
            Orchestrator(
                self.store,
                self.broker,
                redeliver_after=redeliver_after,
                clock=self.clock,
                rand=lambda: self.rand,
                token=lambda: f"t{next(tokens)}",
            )
            for _ in range(replicas)
        ]
        self.streams = [self.store.watch() for _ in self.orchestrators]

    @property
    def orchestrator(self) -> Orchestrator:
        return self.orchestrators[0]

    async def settle(self) -> None:
        """Deliver watch events, fire due timers and run every task until nothing is left.

        Bounded: a saga whose timer keeps firing at once (a busy loop) fails the test instead
        of hanging it.
        """
        for _ in range(SETTLE_ROUNDS):
            moved = sum(
                deliver(stream, o)
                for stream, o in zip(self.streams, self.orchestrators, strict=True)
            )
            moved += self.clock.advance(0)
            busy = [o for o in self.orchestrators if len(o.tasks)]
            if not moved and not busy:
                return
            for o in busy:
                await o.tasks.wait()
        raise AssertionError(f"still busy after {SETTLE_ROUNDS} rounds: a timer firing in a loop?")

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()

    async def close(self) -> None:
        for o in self.orchestrators:
            await o.close()


def spec(*steps: str, **kw: Any) -> dict[str, Any]:
    """A linear saga of ``steps``, each with an action and compensation named after it."""
    return {
        "steps": [{"name": s, "action": f"{s}.do", "compensation": f"{s}.undo"} for s in steps],
        **kw,
    }


def phase(store: MemoryStore, name: str) -> str:
    return str(store.status(name).get("phase"))


def steps(store: MemoryStore, name: str) -> Iterator[tuple[str, str]]:
    for st in store.status(name).get("steps", []):
        yield st["name"], st["phase"]
