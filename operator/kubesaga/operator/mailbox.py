"""One mailbox per saga: its events are processed one batch at a time, in arrival order.

This is what serialises work on a saga inside one process, and what lets results that arrive
while a write is in flight be folded into the next write (one batch, one write). Across
processes the status write's resourceVersion precondition does the same job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kubesaga.broker import Outcome
from kubesaga.engine import Event
from kubesaga.operator.cache import Key
from kubesaga.operator.tasks import TaskSet

log = logging.getLogger("kubesaga.operator")

Batch = list[tuple[Event, "asyncio.Future[Outcome]"]]
Process = Callable[[Key, list[Event]], Awaitable[list[Outcome]]]


class Mailboxes:
    """``put`` queues an event and returns the future its outcome will be set on.

    ``process(key, events)`` returns one outcome per event; if it raises, every event of the
    batch is requeued and ``on_error(key)`` is told, so the caller can look again later.
    """

    def __init__(self, process: Process, on_error: Callable[[Key], None], tasks: TaskSet) -> None:
        self._process = process
        self._on_error = on_error
        self._tasks = tasks
        self._items: dict[Key, Batch] = {}
        self._draining: set[Key] = set()
        self.closed = False

    def put(self, key: Key, event: Event) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_result(Outcome.requeue("operator shutting down"))
            return future
        self._items.setdefault(key, []).append((event, future))
        if key not in self._draining:
            self._draining.add(key)
            self._tasks.spawn(self._drain(key), name=f"saga {key[0]}/{key[1]}")
        return future

    async def _drain(self, key: Key) -> None:
        try:
            while not self.closed and self._items.get(key):
                batch = self._items.pop(key)
                try:
                    outcomes = await self._process(key, [event for event, _ in batch])
                except Exception as error:
                    log.exception("processing saga %s/%s failed", *key)
                    outcomes = [Outcome.requeue(f"operator error: {error}")] * len(batch)
                    self._on_error(key)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._draining.discard(key)

    def close(self) -> None:
        """Take no more events; what is queued but not started is requeued to the broker."""
        self.closed = True
        for batch in self._items.values():
            for _, future in batch:
                if not future.done():
                    future.set_result(Outcome.requeue("operator shutting down"))
        self._items.clear()
