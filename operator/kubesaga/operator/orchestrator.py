"""The operator's core loop: read (from the cache), decide (engine), write, publish.

Each saga's events go through its mailbox (``mailbox.py``), one batch per write; the status
write's resourceVersion precondition is the lock across replicas: on 409 we back off, re-read
and re-decide. Copies and parsed views live in ``cache.py``, the next look at a saga is planned
in ``timers.py``, and every task started here is tracked (``tasks.py``) and awaited by ``close``.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable

from kubesaga.broker import Outcome
from kubesaga.engine import Decision, Event, Reconcile, ResultReceived, Verdict, decide_all
from kubesaga.models import Result
from kubesaga.operator.cache import FINAL_PHASES, Key, SagaCache, phase_of
from kubesaga.operator.clock import Clock, SystemClock
from kubesaga.operator.events import EventPoster
from kubesaga.operator.mailbox import Mailboxes
from kubesaga.operator.metrics import Metrics
from kubesaga.operator.outbox import Outbox
from kubesaga.operator.ports import Publisher, Sagas
from kubesaga.operator.reporting import log_transitions, outcome, record
from kubesaga.operator.shards import OnDeleted, on_deleted
from kubesaga.operator.tasks import TaskSet
from kubesaga.operator.timers import Timers, plan
from kubesaga.operator.ttl import TTL_RETRY_SECONDS, delete_expired
from kubesaga.store import Conflict, NotFound, SagaObject

log = logging.getLogger("kubesaga.operator")

MAX_CONFLICT_RETRIES = 50
REPUBLISH_RETRY_SECONDS = 2.0
CONFLICT_BACKOFF_BASE = 0.01
CONFLICT_BACKOFF_CAP = 1.0


def conflict_backoff(retry: int, rand: float) -> float:
    """Seconds to wait before re-reading after the ``retry``-th 409 in a row ("full jitter").

    Replicas that collided on one saga would collide again if they retried in step.
    """
    return rand * min(CONFLICT_BACKOFF_CAP, CONFLICT_BACKOFF_BASE * 2.0**retry)


class Orchestrator:
    """Drives every Saga this process sees."""

    def __init__(
        self,
        store: Sagas,
        broker: Publisher,
        metrics: Metrics | None = None,
        events: EventPoster | None = None,
        redeliver_after: float = 300.0,
        clock: Clock | None = None,
        cache: SagaCache | None = None,
        rand: Callable[[], float] = random.random,
        token: Callable[[], str] = lambda: secrets.token_hex(6),
        owns: Callable[[Key], bool] = lambda key: True,
    ) -> None:
        self.store = store
        self.broker = broker
        self.cache = cache or SagaCache()
        self.metrics = metrics or Metrics(self.cache.phases)
        self.events = events
        self.clock = clock or SystemClock()
        self.rand = rand
        self.token = token
        self.owns = owns
        """Whether this replica owns the shard of the saga with this key (``sharding.py``)."""
        self.tasks = TaskSet()
        self.timers = Timers(self.clock, self._wake)
        self.mailboxes = Mailboxes(self._process, self._failed, self.tasks)
        self.outbox = Outbox(
            broker,
            self.metrics,
            self.clock,
            self.tasks,
            redeliver_after,
            self._retry_soon,
            retry_failed=REPUBLISH_RETRY_SECONDS,
        )

    # -- inputs ---------------------------------------------------------------------------

    def observe(self, obj: SagaObject, keep_unowned: bool = True) -> bool:
        """A watch event: keep the newest copy and look at the saga again if it is ours.

        Copies of other shards' sagas are kept if ``keep_unowned`` (the catch-all watch's
        sagas, for the moment their shard is gained; a shard watch's are listed again then).
        Returns whether the saga is ours."""
        owned = self.owns(obj.key)
        if not owned and not keep_unowned:
            return False
        if self.cache.offer(obj) and owned:
            self.mailboxes.put(obj.key, Reconcile())
        return owned

    def vanished(self, obj: SagaObject) -> None:
        """A DELETED event: the saga was deleted, or it moved to another watch (a label added
        or changed). An owned saga in flight is confirmed with a GET before it is dropped."""
        record = self.cache.record(obj.key)
        phase = record.phase if record is not None else phase_of(obj)
        if on_deleted(self.owns(obj.key), phase in FINAL_PHASES) is OnDeleted.FORGET:
            self.forget(obj.key)
        else:
            self.tasks.spawn(self._confirm(obj.key), name=f"confirm {obj.namespace}/{obj.name}")

    async def _confirm(self, key: Key) -> None:
        try:
            obj = await self.store.get(*key)
        except NotFound:
            self.forget(key)
            return
        self.observe(obj)

    def forget(self, key: Key) -> None:
        """The saga was deleted, or no watch of this replica follows it any more."""
        self.cache.forget(key)
        self.outbox.forget(key)
        self.timers.cancel(key)

    def take_over(self, keys: list[Key]) -> None:
        """Their shard was gained: look at them as on start-up (re-publishing what is in
        flight, since the replica that owned them may have died before publishing)."""
        for key in keys:
            self.outbox.forget(key)
            self.mailboxes.put(key, Reconcile())

    def let_go(self, keys: list[Key]) -> None:
        """Their shard was lost: no more timers or redeliveries for them here. A decision in
        progress finishes (its write is conditional); the next owner resumes the rest."""
        for key in keys:
            self.outbox.forget(key)
            self.timers.cancel(key)

    async def on_result(self, result: Result) -> Outcome:
        """A result from the results queue; resolved once recorded (ack) or judged."""
        return await self.mailboxes.put(
            (result.saga.namespace, result.saga.name), ResultReceived(result)
        )

    async def close(self) -> None:
        """Stop taking work and wait for every task this orchestrator started."""
        self.mailboxes.close()
        self.timers.close()
        await self.tasks.wait()

    # -- read, decide, write, publish -----------------------------------------------------

    async def _process(self, key: Key, events: list[Event]) -> list[Outcome]:
        obj = await self._load(key)
        reread = False
        conflicts = 0
        for _ in range(MAX_CONFLICT_RETRIES):
            if obj is None:
                return [outcome(self.metrics, event, None, key) for event in events]
            if not self.owns(key):
                self.metrics.unowned_decisions.inc()
            decision = self._decide(obj, events)
            self.outbox.decided(key, decision)
            if not reread and any(j.verdict is Verdict.REJECTED for j in decision.judgements):
                # Judged on the watch's copy, which can lag the write of another replica (the
                # one that dispatched this command): refuse a result only on the latest copy.
                reread = True
                obj = await self._refresh(key)
                continue
            written = obj
            if decision.changed:
                try:
                    written = await self.store.replace_status(obj, decision.status.to_wire())
                except Conflict:
                    self.metrics.conflicts.inc()
                    await self.clock.sleep(conflict_backoff(conflicts, self.rand()))
                    conflicts += 1
                    reread = True
                    obj = await self._refresh(key)
                    continue
                except NotFound:
                    self.forget(key)
                    obj = None
                    continue
                self.metrics.status_writes.inc()
                self.cache.wrote(obj, written, decision.status)
            await self._after_write(key, written, decision)
            return [
                outcome(self.metrics, event, judgement, key)
                for judgement, event in zip(decision.judgements, events, strict=True)
            ]
        log.warning("saga %s/%s: too many write conflicts; will retry", *key)
        return [Outcome.requeue("too many write conflicts")] * len(events)

    async def _load(self, key: Key) -> SagaObject | None:
        obj = self.cache.get(key)
        if obj is not None:
            return obj
        try:
            obj = await self.store.get(*key)
        except NotFound:
            return None
        self.cache.offer(obj)
        return obj

    async def _refresh(self, key: Key) -> SagaObject | None:
        try:
            obj = await self.store.get(*key)
        except NotFound:
            self.forget(key)
            return None
        self.cache.reread(obj)
        return obj

    def _decide(self, obj: SagaObject, events: list[Event]) -> Decision:
        """One engine call for the whole batch: results recorded first, then one step forward."""
        return decide_all(self.cache.view(obj), events, self.clock.now(), self.token())

    async def _after_write(self, key: Key, obj: SagaObject, decision: Decision) -> None:
        redeliver_at = await self.outbox.after_write(key, decision)
        record(self.metrics, decision)
        if self.events is not None:
            self.events.post(obj, decision.transitions)
        log_transitions(obj, decision.transitions)
        await self._plan(key, obj, decision, redeliver_at)

    # -- the next look: timers, redelivery, TTL ----------------------------------------------

    async def _plan(
        self, key: Key, obj: SagaObject, decision: Decision, redeliver_at: float | None
    ) -> None:
        next_look = plan(
            decision.wake_at,
            decision.expires_at,
            redeliver_at,
            self.clock.now(),
            self.clock.monotonic(),
        )
        if next_look.expired:
            if await delete_expired(self.store, obj):
                self.forget(key)
            else:
                self.timers.arm(key, self.clock.monotonic() + TTL_RETRY_SECONDS)
        elif next_look.wake_at is not None:
            self.timers.arm(key, next_look.wake_at)
        else:
            self.timers.cancel(key)

    def _failed(self, key: Key) -> None:
        """Processing raised, maybe after the apiserver applied our write (a timeout while its
        answer was on the way): its commands may be recorded and unpublished. Look again soon,
        as on a first decision, which re-publishes what is in flight (same dispatch ids)."""
        self.outbox.forget(key)
        self._retry_soon(key)

    def _retry_soon(self, key: Key) -> None:
        self.timers.arm(key, self.clock.monotonic() + REPUBLISH_RETRY_SECONDS)

    def _wake(self, key: Key) -> None:
        """A timer fired: look again. The engine decides first (an attempt may have timed out);
        after it, the outbox re-publishes what is still unanswered and due."""
        obj = self.cache.get(key)
        if obj is None or self.owns(key):
            self.mailboxes.put(key, Reconcile())
