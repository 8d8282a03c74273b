"""What owning a shard means for this replica: its sagas, its results queue, its reply_to.

The shard manager (``sharding.py``) says which shards were gained and lost; this module acts on
it. Gaining a shard: consume its results queue, watch its sagas (``shard_watch.py``: the listing
is the resume path, re-publishing what they have in flight) and take over the ones the
catch-all watch delivered. Losing one: stop consuming its queue (unacked results go back to it,
for the next owner), stop its watch and forget the sagas it delivered, and let go of the others.
Commands name their shard's results queue in ``reply_to``, so a result reaches the replica that
owns its saga.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from functools import lru_cache
from typing import Any

from kubesaga.broker import Broker, Outcome
from kubesaga.broker.consumer import Subscription
from kubesaga.models import Command, Result
from kubesaga.operator.cache import Key
from kubesaga.operator.orchestrator import Orchestrator
from kubesaga.operator.shard_watch import ShardWatches
from kubesaga.operator.shards import shard_of, shard_queue

log = logging.getLogger("kubesaga.operator.shards")

UNSUBSCRIBE_GRACE_SECONDS = 2.0
"""How long results already taken from a lost shard's queue may finish before the rest go
back (their writes are conditional, so finishing is safe; it saves the next owner a redelivery)."""


class ShardRouter:
    """The shard of a saga (by its namespace and name), and the results queue its commands
    name in ``reply_to``."""

    def __init__(self, shards: int, results_queue: str) -> None:
        self.shards = shards
        self.results_queue = results_queue
        self.of: Callable[[Key], int] = lru_cache(maxsize=1 << 16)(
            lambda key: shard_of(key[0], key[1], shards)
        )

    def queue(self, shard: int) -> str:
        return shard_queue(self.results_queue, shard)

    def queues(self) -> list[str]:
        return [self.queue(shard) for shard in range(self.shards)]


class ShardedPublisher:
    """The orchestrator's publisher: each command names its saga's shard's results queue."""

    def __init__(self, broker: Broker, router: ShardRouter) -> None:
        self.broker = broker
        self.router = router

    async def publish_command(self, command: Command) -> None:
        saga = command.saga
        reply_to = self.router.queue(self.router.of((saga.namespace, saga.name)))
        await self.broker.publish_command(command, reply_to=reply_to)


class ShardWork:
    """Consumers of the owned shards' results queues, and the orchestrator's view of ownership.

    ``owned`` answers the shards this replica acts for (the manager's); ``on_result`` handles
    a result from any queue.
    """

    def __init__(
        self,
        broker: Broker,
        router: ShardRouter,
        owned: Callable[[], Collection[int]],
        on_result: Callable[[Result], Awaitable[Outcome]],
    ) -> None:
        self.broker = broker
        self.router = router
        self.owned = owned
        self.on_result = on_result
        self.orchestrator: Orchestrator | None = None
        self.watches: ShardWatches | None = None
        self.prefetch = max(1, math.ceil(broker.settings.prefetch / router.shards))
        """Per shard queue: the operator's prefetch split over the shards, so a replica that
        owns every shard takes as many results at once as one unsharded operator did (16
        queues of 64 each flooded a starved replica's event loop until its Lease renewals
        were late)."""
        self._subscriptions: dict[int, Subscription[Any]] = {}

    def owns(self, key: Key) -> bool:
        return self.router.of(key) in self.owned()

    async def gained(self, shards: set[int]) -> None:
        for shard in sorted(shards):
            if shard not in self._subscriptions:
                self._subscriptions[shard] = await self.broker.consume_results(
                    self.on_result, shard_queue=self.router.queue(shard), prefetch=self.prefetch
                )
        if self.watches is not None:
            for shard in sorted(shards):
                self.watches.start(shard)
        if self.orchestrator is not None:  # the catch-all watch's (a shard watch's: listed)
            keys = self.orchestrator.cache.keys(lambda k: self.router.of(k) in shards)
            self.orchestrator.take_over(keys)

    async def lost(self, shards: set[int]) -> None:
        stopping = [self._subscriptions.pop(s) for s in sorted(shards) if s in self._subscriptions]
        await asyncio.gather(  # at once: on shutdown every shard is lost together
            *(self.broker.unsubscribe(sub, UNSUBSCRIBE_GRACE_SECONDS) for sub in stopping)
        )
        watched = await self.watches.stop(shards) if self.watches is not None else []
        if self.orchestrator is not None:
            for key in watched:
                self.orchestrator.forget(key)
            keys = self.orchestrator.cache.keys(lambda k: self.router.of(k) in shards)
            self.orchestrator.let_go(keys)
