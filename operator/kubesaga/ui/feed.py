"""One Kubernetes watch per server, fanned out to every open page.

Each browser tab holds a server-sent-event stream; none of them makes its own watch, so a wall
of open tabs costs the apiserver one watch. The feed keeps the newest copy of every Saga (a new
page starts from that snapshot, then receives changes) and a bounded queue per subscriber: a
tab that cannot keep up is dropped, and its EventSource reconnects to a fresh snapshot, rather
than letting the server buffer without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubesaga.store import SagaObject
from kubesaga.store.watching import follow

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


@dataclass(frozen=True)
class Change:
    """``kind`` is ``upsert`` or ``delete`` with ``saga`` its newest (or last) copy; or
    ``status`` (no saga) when the watch failed or recovered (``SagaFeed.error``)."""

    kind: str
    saga: SagaObject | None = None


class Closed(Exception):
    """The subscriber was dropped (too slow) or the feed stopped."""


class Subscription:
    """The changes one page receives, after the snapshot it started from."""

    def __init__(self, snapshot: list[SagaObject]) -> None:
        self.snapshot = snapshot
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)

    def close(self) -> None:
        """End the stream: what is queued is dropped, ``next()`` raises Closed."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def offer(self, change: Change | None) -> bool:
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            return False
        return True

    async def next(self) -> Change:
        change = await self._queue.get()
        if change is None:
            raise Closed
        return change


ListFn = Callable[..., Awaitable[Any]]


class SagaFeed:
    """Follows Sagas with ``list_fn(*args)`` (cluster-wide or one namespace) for every page."""

    def __init__(self, list_fn: ListFn, *args: Any) -> None:
        self._list_fn, self._args = list_fn, args
        self.sagas: dict[tuple[str, str], SagaObject] = {}
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        self.error: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kubesaga ui watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for subscription in list(self._subscribers):
            subscription.close()
        self._subscribers.clear()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """A subscription starting from the current copies (once the first list arrived)."""
        await self.synced.wait()
        subscription = Subscription(sorted(self.sagas.values(), key=lambda s: s.key))
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def _run(self) -> None:
        while True:
            try:
                listing = await self._list_fn(*self._args)
                version = listing["metadata"]["resourceVersion"]
                fresh = {(o.namespace, o.name): o for o in map(SagaObject, listing["items"])}
                for key in set(self.sagas) - set(fresh):
                    self._publish(Change("delete", self.sagas.pop(key)))
                for obj in fresh.values():
                    self._apply("ADDED", obj)
                if self.error is not None:
                    self.error = None
                    self._publish(Change("status"))
                self.synced.set()
                events = follow(self._list_fn, *self._args, resource_version=version)
                async with contextlib.aclosing(events):
                    async for kind, raw in events:
                        self._apply(kind, SagaObject(raw))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # shown on the pages; the watch starts over
                self.error = f"watching Sagas failed: {_describe(error)}"
                log.warning("%s; watching again in 2 s", self.error)
                self._publish(Change("status"))
                self.synced.set()
                await asyncio.sleep(2)

    def _apply(self, kind: str, obj: SagaObject) -> None:
        if kind == "DELETED":
            self.sagas.pop(obj.key, None)
            self._publish(Change("delete", obj))
        elif kind in ("ADDED", "MODIFIED"):
            old = self.sagas.get(obj.key)
            if old is not None and old.resource_version == obj.resource_version:
                return
            self.sagas[obj.key] = obj
            self._publish(Change("upsert", obj))

    def _publish(self, change: Change) -> None:
        for subscription in list(self._subscribers):
            if not subscription.offer(change):
                log.info("a page fell %d changes behind; it reconnects", QUEUE_SIZE)
                self._subscribers.discard(subscription)
                subscription.close()


def _describe(error: Exception) -> str:
    """One line for the page; a refusal says what to try."""
    status = getattr(error, "status", None)
    if status == 403:
        return "403 Forbidden: your identity may not list Sagas here (try --namespace)"
    if status is not None:
        return f"{status} {getattr(error, 'reason', '')}".strip()
    return str(error) or type(error).__name__
