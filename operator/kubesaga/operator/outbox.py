"""Getting the commands that status records onto the broker, once and again when lost.

Status is the outbox: commands are published only after the write that records them, so a
process that dies in between, a publish that fails, or a message the broker loses leaves a
dispatch in status with no command on the wire. Those are re-published with the same dispatch
ids (handlers and the engine recognise repeats): on the first look at a saga in this process,
and when a command has gone unanswered for ``redeliver_after`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kubesaga.engine import SagaView, inflight_commands
from kubesaga.models import Command
from kubesaga.operator.cache import Key
from kubesaga.operator.clock import Clock
from kubesaga.operator.metrics import Metrics
from kubesaga.operator.ports import Publisher
from kubesaga.operator.tasks import TaskSet

log = logging.getLogger("kubesaga.operator")


def key_of(view: SagaView) -> Key:
    return view.ref.namespace, view.ref.name


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
        self.seen: set[Key] = set()
        """Sagas this process has looked at; the first look re-publishes in-flight commands."""

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

    def track(self, view: SagaView) -> float | None:
        """After a decision: when the oldest command still in flight is due for redelivery."""
        inflight = (c.dispatch_id for c in inflight_commands(view))
        return self.redelivery.track(key_of(view), inflight, self.clock.monotonic())

    def resume(self, view: SagaView) -> None:
        """First look at a saga in this process: re-publish everything in flight.

        A previous operator may have died between recording a dispatch and publishing it.
        """
        if key_of(view) not in self.seen:
            self.seen.add(key_of(view))
            self.republish(view, only_stale=False)

    def republish(self, view: SagaView, only_stale: bool) -> None:
        key = key_of(view)
        try:
            now = self.clock.monotonic()
            due = [
                c
                for c in inflight_commands(view)
                if not only_stale or self.redelivery.due(key, c.dispatch_id, now)
            ]
        except Exception:  # never let one odd saga stop the watch or its own reconcile
            log.exception("re-publishing for %s/%s failed", *key)
            return
        if due:
            log.info("%s/%s: re-publishing %d in-flight commands", *key, len(due))
            # Counted from the attempt, not the confirm: otherwise every look at the saga while
            # the confirm is pending finds the command still due and sends it again.
            self.redelivery.published(key, (c.dispatch_id for c in due), now)
            self.tasks.spawn(self.publish(key, due), name=f"republish {key[0]}/{key[1]}")

    def forget(self, key: Key) -> None:
        self.redelivery.forget(key)
        self.seen.discard(key)
