"""The shard manager: keeps this replica's shard Leases and tells the operator what it gained
and lost.

Every ``renew_every`` seconds it renews its member Lease, reads the installation's Leases, asks
``shards.plan`` what to do and does it: shards it hands back or fails to renew are *lost* first
(the operator stops consuming their results queues before another replica can take them), shards
it acquired are *gained*. A shard whose renewals kept failing for a whole lease duration is lost
too, as kube-controller-manager's leader election gives up after its renew deadline: another
replica may hold it by then. None of this is a lock (the resourceVersion precondition on Saga
status is): at worst two replicas decide a saga for a moment and one of them gets a 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.operator.leases import Leases, LeaseStore
from kubesaga.operator.metrics import Metrics
from kubesaga.operator.shards import plan

log = logging.getLogger("kubesaga.operator.shards")

ShardsHook = Callable[[set[int]], Awaitable[None]]

STALE_MEMBER_DURATIONS = 4
"""A member Lease expired for this many lease durations is deleted (by any replica): pods that
were killed leave theirs behind, and a pod's identity is never reused."""


class ShardManager:
    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        shards: int,
        lease_seconds: int,
        renew_every: float,
        on_gained: ShardsHook,
        on_lost: ShardsHook,
        metrics: Metrics,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.identity = identity
        self.shards = shards
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.on_gained = on_gained
        self.on_lost = on_lost
        self.metrics = metrics
        self.wall = wall
        self.owned: dict[int, float] = {}
        """Shards this replica acts for, with when their Lease was last written (wall time)."""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        metrics.shards_owned.set_function(lambda: len(self.owned))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="kubesaga shard leases")

    async def close(self) -> None:
        """Stop renewing, lose every shard (consumers first), then hand the Leases back."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        owned = set(self.owned)
        self.owned.clear()
        if owned:
            await self.on_lost(owned)
        with contextlib.suppress(Exception):  # best effort: they expire anyway
            leases = await self.store.read()
            for shard in owned:
                known = leases.shards.get(shard)
                if known is not None and known.state.holder == self.identity:
                    await self.store.release_shard(shard, known)
            await self.store.drop_member(self.identity)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.renew_every)

    async def round(self) -> None:
        """A ``tick``, and what to do when the apiserver did not let it happen."""
        try:
            await self.tick()
        except ApiException as error:
            self.metrics.lease_renew_failures.inc()
            if error.status == 403:
                await self._unsharded(error)
            else:
                log.warning("shard leases: %r; trying again", error)
                await self._expire_unrenewed()
        except Exception as error:
            self.metrics.lease_renew_failures.inc()
            log.warning("shard leases: %r; trying again", error)
            await self._expire_unrenewed()

    async def tick(self) -> None:
        """One round: renew, read, plan, release and lose, renew, acquire and gain."""
        leases = await self.store.read()
        now = self.wall()
        member = leases.members.get(self.identity)
        if not await self.store.hold_member(member, self.identity, self.lease_seconds, now):
            leases = await self.store.read()  # raced with our own earlier write: read again
        todo = plan(
            self.identity,
            self.shards,
            {s: lease.state for s, lease in leases.shards.items()},
            {m: lease.state for m, lease in leases.members.items()},
            now,
        )
        release = {s for s in todo.release if s in self.owned}
        if release:  # stop consuming before anyone else can take them
            for shard in release:
                del self.owned[shard]
            await self._lose(release, "rebalanced")
        await asyncio.gather(*(self.store.release_shard(s, leases.shards[s]) for s in todo.release))
        # Acted for here, but no longer ours in the Leases: taken over while we were frozen.
        taken = {s for s in self.owned if s not in todo.renew}
        if taken:
            for shard in taken:
                del self.owned[shard]
            self.metrics.lease_renew_failures.inc(len(taken))
            await self._lose(taken, "taken over while this replica was not renewing")
        lost: set[int] = set()
        gained: set[int] = set()
        # All at once: on a starved event loop, each sequential request waited its turn behind
        # the backlog, and a round of 16 renewals outlasted the Leases it renewed.
        renewed = await self._hold(todo.renew, leases, now)
        for shard, held in zip(todo.renew, renewed, strict=True):
            if held and shard not in self.owned:  # ours in the Lease, not acted for: a restart
                gained.add(shard)
            if held:
                self.owned[shard] = now
            elif self.owned.pop(shard, None) is not None:
                lost.add(shard)
        if lost:
            self.metrics.lease_renew_failures.inc(len(lost))
            await self._lose(lost, "taken by another replica")
        for shard, held in zip(
            todo.acquire, await self._hold(todo.acquire, leases, now), strict=True
        ):
            if held:
                self.owned[shard] = now
                gained.add(shard)
        if gained:
            self.metrics.shard_rebalances.labels(change="gained").inc(len(gained))
            log.info("shards gained: %s (share %d)", sorted(gained), todo.share)
            await self._gain(gained)
        await self._collect_stale_members(leases, now)

    async def _gain(self, gained: set[int]) -> None:
        """Act for ``gained``; if that failed part way (the broker was down while its results
        queues were subscribed), they are not acted for: forget them, so the next round, which
        still finds their Leases ours, gains them again. Kept, a shard would stay owned with no
        consumer of its results queue and its sagas would wait for ever."""
        try:
            await self.on_gained(gained)
        except BaseException:
            for shard in gained:
                self.owned.pop(shard, None)
            raise

    async def _hold(self, shards: tuple[int, ...], leases: Leases, now: float) -> list[bool]:
        return await asyncio.gather(
            *(
                self.store.hold_shard(
                    s, leases.shards.get(s), self.identity, self.lease_seconds, now
                )
                for s in shards
            )
        )

    async def _lose(self, shards: set[int], why: str) -> None:
        self.metrics.shard_rebalances.labels(change="lost").inc(len(shards))
        log.info("shards lost (%s): %s", why, sorted(shards))
        await self.on_lost(shards)

    async def _unsharded(self, error: ApiException) -> None:
        """Leases are forbidden (RBAC without them, e.g. an upgrade that kept its own Role):
        act for every shard, as before sharding, rather than for none. Correct, since the
        status write is the lock; replicas just do each other's work until Leases are granted,
        when the next round gives the shards back and takes a fair share."""
        now = self.wall()
        gained = set(range(self.shards)) - set(self.owned)
        self.owned = dict.fromkeys(range(self.shards), now)
        if gained:
            log.error(
                "shard Leases are forbidden in namespace %s (%s): acting for every shard; "
                "grant get, list, create, update and delete on leases.coordination.k8s.io",
                self.store.namespace,
                error.reason,
            )
            await self._gain(gained)

    async def _expire_unrenewed(self) -> None:
        """Lose the shards whose Lease could not be renewed for a whole lease duration."""
        now = self.wall()
        expired = {s for s, at in self.owned.items() if now >= at + self.lease_seconds}
        for shard in expired:
            del self.owned[shard]
        if expired:
            await self._lose(expired, "renewals failed for a lease duration")

    async def _collect_stale_members(self, leases: Leases, now: float) -> None:
        for identity, lease in leases.members.items():
            state = lease.state
            if identity == self.identity or state.renewed is None:
                continue
            if now > state.renewed + STALE_MEMBER_DURATIONS * max(state.duration, 1.0):
                with contextlib.suppress(ApiException):
                    await self.store.drop_member(identity)


def lease_seconds(seconds: float) -> int:
    """A Lease's duration is whole seconds; round a setting up, never below one."""
    return max(1, math.ceil(seconds))
