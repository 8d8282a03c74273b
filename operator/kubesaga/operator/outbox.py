"""Getting the commands that status records onto the broker, once and again when lost.

Status is the outbox: commands are published only after the write that records them, so a
process that dies in between, a publish that fails, or a message the broker loses leaves a
dispatch in status with no command on the wire. Those are re-published with the same dispatch
ids (handlers and the engine recognise repeats), always after the engine decided (so an attempt
that timed out meanwhile is retried, not re-sent): on this process's first decision about a
saga, and when a command has gone unanswered for ``redeliver_after`` seconds. The engine's
``Decision.in_flight`` says what is unanswered; nothing here reads status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kubesaga.engine import Decision
from kubesaga.models import Command
from kubesaga.operator.cache import Key
from kubesaga.operator.clock import Clock
from kubesaga.operator.metrics import Metrics
from kubesaga.operator.ports import Publisher
from kubesaga.operator.tasks import TaskSet

log = logging.getLogger("kubesaga.operator")


class Redelivery:
    """When this process last published each in-flight command, to re-publish quiet ones.

    A command that was published but whose result never came (a lost message, a handler that
    died without nacking) is published again after ``after`` seconds with the same dispatch id.
    """

    def __init__(self, after: float, retry_failed: float) -> None:
        self.after = after
        self.retry_failed = retry_failed
        self._published: dict[Key, dict[str, float]] = {}

    def published(self, key: Key, dispatch_ids: Iterable[str], now: float) -> None:
        sent = self._published.setdefault(key, {})
        for dispatch_id in dispatch_ids:
            sent[dispatch_id] = now

    def track(self, key: Key, inflight: Iterable[str], now: float) -> float | None:
        """Keep only the dispatch ids still in flight; return when the oldest is due again.

        One we never published (another replica did, or a process before a restart) is
        counted from now.
        """
        known = self._published.get(key, {})
        times = {dispatch_id: known.get(dispatch_id, now) for dispatch_id in inflight}
        if not times:
            self._published.pop(key, None)
            return None
        self._published[key] = times
        return min(times.values()) + self.after

    def failed(self, key: Key, dispatch_ids: Iterable[str], now: float) -> None:
        """A publish failed: these are due again in ``retry_failed`` seconds, not ``after``."""
        self.published(key, dispatch_ids, now - self.after + self.retry_failed)

    def due(self, key: Key, dispatch_id: str, now: float) -> bool:
        return now - self._published.get(key, {}).get(dispatch_id, now) >= self.after

    def forget(self, key: Key) -> None:
        self._published.pop(key, None)


class Outbox:
    """Publishes decided commands and re-publishes in-flight ones (in tracked tasks).

    ``on_failure(key)`` is told when a publish fails, so the saga is looked at again soon.
    """

    def __init__(
        self,
        broker: Publisher,
        metrics: Metrics,
        clock: Clock,
        tasks: TaskSet,
        redeliver_after: float,
        on_failure: Callable[[Key], None],
        retry_failed: float = 2.0,
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self.clock = clock
        self.tasks = tasks
        self.redelivery = Redelivery(redeliver_after, retry_failed)
        self.on_failure = on_failure
        self._seen: set[Key] = set()
        """Sagas this process has decided about."""
        self._resume: dict[Key, set[str]] = {}
        """Dispatch ids to re-publish after the next write, from a first decision."""

    async def publish(self, key: Key, commands: list[Command]) -> None:
        try:
            await asyncio.gather(*(self.broker.publish_command(c) for c in commands))
        except Exception as error:
            log.warning("publishing to the broker failed (%s); will re-publish", error)
            # Due again soon: the next plan arms the saga's timer for it, and the wake re-sends.
            self.redelivery.failed(key, (c.dispatch_id for c in commands), self.clock.monotonic())
            self.on_failure(key)
            return
        self.redelivery.published(key, (c.dispatch_id for c in commands), self.clock.monotonic())
        for command in commands:
            self.metrics.commands.labels(kind=command.kind.value).inc()

    def decided(self, key: Key, decision: Decision) -> None:
        """Told of every decision, written or not: the first about a saga in this process names
        what to re-publish once a decision about it is written.

        That is what was in flight in the first copy this process decided on (a previous
        operator may have died between recording those dispatches and publishing them), not
        what this process dispatched itself, nor what another replica dispatched later.
        """
        if key not in self._seen:
            self._seen.add(key)
            new = {c.dispatch_id for c in decision.commands}
            self._resume[key] = {i for i in decision.in_flight.dispatch_ids if i not in new}

    async def after_write(self, key: Key, decision: Decision) -> float | None:
        """Publish the decided commands, re-publish the due ones; return when the oldest command
        still unanswered is due for redelivery (monotonic), or None."""
        if decision.commands:
            await self.publish(key, list(decision.commands))
        now = self.clock.monotonic()
        resume = self._resume.pop(key, set())
        in_flight = decision.in_flight
        due = {i for i in in_flight.dispatch_ids if i in resume or self.redelivery.due(key, i, now)}
        if due:
            self._republish(key, in_flight.commands(due), now)
        return self.redelivery.track(key, in_flight.dispatch_ids, now)

    def _republish(self, key: Key, commands: list[Command], now: float) -> None:
        log.info("%s/%s: re-publishing %d in-flight commands", *key, len(commands))
        # Counted from the attempt, not the confirm: otherwise every look at the saga while the
        # confirm is pending finds the command still due and sends it again.
        self.redelivery.published(key, (c.dispatch_id for c in commands), now)
        self.tasks.spawn(self.publish(key, commands), name=f"republish {key[0]}/{key[1]}")

    def forget(self, key: Key) -> None:
        self.redelivery.forget(key)
        self._seen.discard(key)
        self._resume.pop(key, None)
