"""The operator's core loop: read (from the watch cache), decide (engine), write, publish.

One mailbox per saga serialises the work on that saga inside this process; results that arrive
while a write is in flight are folded into the next write. Across processes (several replicas)
the status write's resourceVersion precondition is the lock: on 409 we re-read and re-decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from kubesaga.broker import Broker, Outcome
from kubesaga.engine import (
    Decision,
    Event,
    Reconcile,
    ResultReceived,
    SagaView,
    Verdict,
    decide_all,
    inflight_commands,
    reject_spec,
)
from kubesaga.models import Command, Result, SagaRef, SagaStatus, parse_spec, parse_status
from kubesaga.operator.events import EventPoster
from kubesaga.operator.metrics import Metrics
from kubesaga.store import Conflict, NotFound, SagaObject, SagaStore

log = logging.getLogger("kubesaga.operator")

Key = tuple[str, str]
MAX_CONFLICT_RETRIES = 50
REPUBLISH_RETRY_SECONDS = 2.0
TTL_RETRY_SECONDS = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Mailbox:
    items: list[tuple[Event, asyncio.Future[Outcome]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None


class Orchestrator:
    """Drives every Saga this process sees."""

    def __init__(
        self,
        store: SagaStore,
        broker: Broker,
        metrics: Metrics | None = None,
        events: EventPoster | None = None,
        redeliver_after: float = 300.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.broker = broker
        self.metrics = metrics or Metrics(self.phases)
        self.events = events
        self.redeliver_after = redeliver_after
        self.clock = clock
        self.cache: dict[Key, SagaObject] = {}
        self.mailboxes: dict[Key, _Mailbox] = {}
        self.published: dict[Key, dict[str, float]] = {}
        """Per saga: in-flight dispatch id -> monotonic time this process last published it."""
        self.closed = False
        self.views: dict[Key, tuple[str, SagaView | str]] = {}
        """Parsed copies by resourceVersion, so the same copy is never parsed twice."""
        self.seen: set[Key] = set()
        """Sagas this process has looked at; the first look re-publishes in-flight commands."""

    # -- inputs ---------------------------------------------------------------------------

    def phases(self) -> list[str]:
        return [str((obj.status or {}).get("phase") or "Pending") for obj in self.cache.values()]

    def observe(self, obj: SagaObject) -> None:
        """A watch event: keep the newest copy and look at the saga again."""
        known = self.cache.get(obj.key)
        if known is not None and not obj.newer_than(known):
            return  # our own write coming back, or an older copy
        self.cache[obj.key] = obj
        self._enqueue(obj.key, Reconcile())
        self._resume(obj)

    def _resume(self, obj: SagaObject) -> None:
        """First look at a saga in this process: re-publish what may have been lost.

        A previous operator may have died between recording a dispatch and publishing it; the
        commands carry the same dispatch ids, so handlers and the engine recognise repeats.
        """
        if obj.key not in self.seen:
            self.seen.add(obj.key)
            try:
                self._republish_inflight(obj, only_stale=False)
            except Exception:  # never let one odd saga stop the watch or its own reconcile
                log.exception("re-publishing for %s/%s failed", obj.namespace, obj.name)

    def forget(self, key: Key) -> None:
        self.cache.pop(key, None)
        self.views.pop(key, None)
        self.published.pop(key, None)
        self.seen.discard(key)
        box = self.mailboxes.get(key)
        if box is not None and box.timer is not None:
            box.timer.cancel()
            box.timer = None

    async def on_result(self, result: Result) -> Outcome:
        """A result from the results queue; resolved once recorded (ack) or judged."""
        key = (result.saga.namespace, result.saga.name)
        return await self._enqueue(key, ResultReceived(result))

    # -- mailbox --------------------------------------------------------------------------

    def _enqueue(self, key: Key, event: Event) -> asyncio.Future[Outcome]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        box = self.mailboxes.setdefault(key, _Mailbox())
        box.items.append((event, future))
        if box.task is None or box.task.done():
            box.task = asyncio.create_task(self._drain(key, box), name=f"saga {key[0]}/{key[1]}")
        return future

    async def _drain(self, key: Key, box: _Mailbox) -> None:
        while box.items and not self.closed:
            batch, box.items = box.items, []
            try:
                outcomes = await self._process(key, batch)
            except Exception as error:
                log.exception("processing saga %s/%s failed", *key)
                outcomes = [Outcome.requeue(f"operator error: {error}")] * len(batch)
                self._schedule(key, box, time.monotonic() + REPUBLISH_RETRY_SECONDS)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
        if not box.items and box.timer is None and key not in self.cache:
            self.mailboxes.pop(key, None)

    # -- read, decide, write, publish -----------------------------------------------------

    async def _load(self, key: Key) -> SagaObject | None:
        obj = self.cache.get(key)
        if obj is not None:
            return obj
        try:
            obj = await self.store.get(*key)
        except NotFound:
            return None
        self.cache[key] = obj
        self._resume(obj)
        return obj

    async def _refresh(self, key: Key) -> SagaObject | None:
        try:
            obj = await self.store.get(*key)
        except NotFound:
            self.forget(key)
            return None
        known = self.cache.get(key)
        if known is None or obj.newer_than(known) or known.resource_version == obj.resource_version:
            self.cache[key] = obj
        return obj

    async def _process(
        self, key: Key, batch: list[tuple[Event, asyncio.Future[Outcome]]]
    ) -> list[Outcome]:
        obj = await self._load(key)
        reread = False
        for _ in range(MAX_CONFLICT_RETRIES):
            if obj is None:
                return [self._gone(event, key) for event, _ in batch]
            decision = self._decide(obj, [event for event, _ in batch])
            if not reread and any(v is Verdict.REJECTED for v, _ in decision.verdicts):
                # Judged on the watch's copy, which can lag the write of another replica (the
                # one that dispatched this command): refuse a result only on the latest copy.
                reread = True
                obj = await self._refresh(key)
                continue
            written = obj
            status = decision.status
            if decision.changed:
                try:
                    written = await self.store.replace_status(obj, status.to_wire())
                except Conflict:
                    self.metrics.conflicts.inc()
                    reread = True
                    obj = await self._refresh(key)
                    continue
                except NotFound:
                    self.forget(key)
                    obj = None
                    continue
                self.metrics.status_writes.inc()
                view = self._view(obj)
                if isinstance(view, SagaView):
                    self.views[key] = (written.resource_version, replace(view, status=status))
                known = self.cache.get(key)
                if known is None or written.newer_than(known):
                    self.cache[key] = written
            await self._after_write(key, written, decision)
            return [
                self._outcome(verdict, event)
                for verdict, (event, _) in zip(decision.verdicts, batch, strict=True)
            ]
        log.warning("saga %s/%s: too many write conflicts; will retry", *key)
        return [Outcome.requeue("too many write conflicts")] * len(batch)

    def _view(self, obj: SagaObject) -> SagaView | str:
        """The parsed saga (or why its spec is invalid), cached by resourceVersion.

        Parsing is most of the operator's CPU per transition; a copy we wrote ourselves is
        cached with the status we wrote, so it is never parsed back.
        """
        cached = self.views.get(obj.key)
        if cached is not None and cached[0] == obj.resource_version:
            return cached[1]
        view = self._parse(obj)
        self.views[obj.key] = (obj.resource_version, view)
        return view

    def _parse(self, obj: SagaObject) -> SagaView | str:
        cached = self.views.get(obj.key)
        previous = cached[1] if cached is not None else None
        if (
            isinstance(previous, SagaView)
            and previous.ref.uid == obj.uid
            and previous.generation == obj.generation
        ):
            spec = previous.spec
        else:
            try:
                spec = parse_spec(obj.spec)
            except ValidationError as error:
                return "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
                )
        try:
            status = parse_status(obj.status)
        except ValidationError:
            status = None  # an unreadable status (hand-edited?) is rebuilt from the spec
        ref = SagaRef(namespace=obj.namespace, name=obj.name, uid=obj.uid)
        return SagaView(ref=ref, generation=obj.generation, spec=spec, status=status)

    def _decide(self, obj: SagaObject, events: list[Event]) -> Decision:
        """One engine call for the whole batch: results recorded first, then one step forward."""
        now = self.clock()
        view = self._view(obj)
        if isinstance(view, str):
            known: SagaStatus | None = None
            with contextlib.suppress(ValidationError):
                known = parse_status(obj.status)
            decision = reject_spec(known, obj.generation, view, now)
            verdicts = tuple(
                (Verdict.REJECTED, "saga spec is invalid")
                if isinstance(event, ResultReceived)
                else (Verdict.APPLIED, "")
                for event in events
            )
            return replace(decision, verdicts=verdicts)
        return decide_all(view, events, now, secrets.token_hex(6))

    def _outcome(self, verdict: tuple[Verdict, str], event: Event) -> Outcome:
        if not isinstance(event, ResultReceived):
            return Outcome.ack()
        self.metrics.results.labels(verdict=verdict[0].value).inc()
        if verdict[0] is Verdict.REJECTED:
            return Outcome.dead_letter(verdict[1])
        return Outcome.ack()

    def _gone(self, event: Event, key: Key) -> Outcome:
        if isinstance(event, ResultReceived):
            self.metrics.results.labels(verdict="rejected").inc()
            return Outcome.dead_letter(f"saga {key[0]}/{key[1]} not found")
        return Outcome.ack()

    async def _after_write(self, key: Key, obj: SagaObject, decision: Decision) -> None:
        if decision.commands:
            await self._publish(key, list(decision.commands))
        for action, seconds in decision.samples:
            self.metrics.step_seconds.labels(action=action).observe(seconds)
        if self.events is not None:
            self.events.post(obj, decision.transitions)
        for t in decision.transitions:
            # Saga phases and problems at INFO; routine step progress at DEBUG (a log line per
            # step was 8% of the operator's CPU in profiles, and Events record it).
            level = logging.INFO if t.step is None or t.warning else logging.DEBUG
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "%s/%s %s: %s",
                    obj.namespace,
                    obj.name,
                    t.reason,
                    t.message,
                    extra={"saga": f"{obj.namespace}/{obj.name}", "step": t.step},
                )
        await self._plan(key, obj, decision.wake_at)

    async def _publish(self, key: Key, commands: list[Command]) -> None:
        """Publish after the write (status is the outbox); on failure, retry from status later."""
        try:
            await asyncio.gather(*(self.broker.publish_command(c) for c in commands))
        except Exception as error:
            log.warning("publishing to the broker failed (%s); will re-publish", error)
            box = self.mailboxes.get(key)
            if box is not None:
                self._schedule(key, box, time.monotonic() + REPUBLISH_RETRY_SECONDS)
            return
        now = time.monotonic()
        for command in commands:
            self.published.setdefault(key, {})[command.dispatch_id] = now
            self.metrics.commands.labels(kind=command.kind.value).inc()

    # -- timers, redelivery, TTL ----------------------------------------------------------

    async def _plan(self, key: Key, obj: SagaObject, wake_at: datetime | None) -> None:
        """Schedule the next look at this saga: engine timers, redelivery, TTL cleanup."""
        view = self._view(obj)
        if isinstance(view, str) or view.status is None:
            return
        status = view.status
        candidates: list[float] = []
        now_wall, now_mono = self.clock(), time.monotonic()

        def at(when: datetime) -> float:
            return now_mono + max((when - now_wall).total_seconds(), 0.0)

        if wake_at is not None:
            candidates.append(at(wake_at))
        known = self.published.get(key, {})
        inflight = {
            # Unknown here: published by another replica or before a restart; start counting now.
            command.dispatch_id: known.get(command.dispatch_id, now_mono)
            for command in inflight_commands(view)
        }
        if inflight:
            self.published[key] = inflight  # answered dispatch ids are dropped
            candidates.append(min(inflight.values()) + self.redeliver_after)
        else:
            self.published.pop(key, None)
        ttl = view.spec.ttl_seconds_after_finished
        if status.phase.is_final and ttl is not None and status.finished_at is not None:
            expiry = status.finished_at + timedelta(seconds=ttl)
            if expiry <= now_wall:
                await self._expire(obj)
                return
            candidates.append(at(expiry))
        box = self.mailboxes.setdefault(key, _Mailbox())
        if candidates:
            self._schedule(key, box, min(candidates))
        elif box.timer is not None:
            box.timer.cancel()
            box.timer = None
            box.timer_at = None

    def _schedule(self, key: Key, box: _Mailbox, when: float) -> None:
        """Arm the saga's one timer for ``when`` unless it already fires earlier."""
        if box.timer is not None and box.timer_at is not None and box.timer_at <= when:
            return
        if box.timer is not None:
            box.timer.cancel()
        loop = asyncio.get_running_loop()
        box.timer_at = when
        box.timer = loop.call_at(
            loop.time() + max(when - time.monotonic(), 0.0), self._wake, key, box
        )

    def _wake(self, key: Key, box: _Mailbox) -> None:
        box.timer = None
        box.timer_at = None
        if self.closed:
            return
        obj = self.cache.get(key)
        if obj is not None:
            self._republish_inflight(obj, only_stale=True)
        self._enqueue(key, Reconcile())

    def _republish_inflight(self, obj: SagaObject, only_stale: bool) -> None:
        view = self._view(obj)
        if isinstance(view, str):
            return
        now = time.monotonic()
        due = [
            c
            for c in inflight_commands(view)
            if not only_stale
            or now - self.published.get(obj.key, {}).get(c.dispatch_id, now) >= self.redeliver_after
        ]
        if due:
            log.info(
                "%s/%s: re-publishing %d in-flight commands", obj.namespace, obj.name, len(due)
            )
            task = asyncio.create_task(self._publish(obj.key, due))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _expire(self, obj: SagaObject) -> None:
        """Delete after ``ttlSecondsAfterFinished``. Only "gone already" (NotFound) and "a newer
        saga of that name" (the uid precondition's Conflict) end it; anything else is retried."""
        try:
            await self.store.delete(obj.namespace, obj.name, uid=obj.uid)
            log.info("%s/%s: deleted after ttlSecondsAfterFinished", obj.namespace, obj.name)
        except (NotFound, Conflict):
            pass
        except Exception as error:
            log.warning(
                "%s/%s: deleting after ttlSecondsAfterFinished failed (%s); retrying in %.0fs",
                obj.namespace,
                obj.name,
                error,
                TTL_RETRY_SECONDS,
            )
            box = self.mailboxes.setdefault(obj.key, _Mailbox())
            self._schedule(obj.key, box, time.monotonic() + TTL_RETRY_SECONDS)
            return
        self.forget(obj.key)

    async def close(self) -> None:
        self.closed = True
        for box in self.mailboxes.values():
            if box.timer is not None:
                box.timer.cancel()
        tasks = [b.task for b in self.mailboxes.values() if b.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
