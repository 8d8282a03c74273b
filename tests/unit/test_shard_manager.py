"""The shard manager's rounds against in-memory Leases that enforce resourceVersion, as the
apiserver does: what it gains, loses and hands back, and in which order."""

from __future__ import annotations

import itertools

from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.operator.leases import Lease, Leases
from kubesaga.operator.metrics import Metrics
from kubesaga.operator.sharding import ShardManager
from kubesaga.operator.shards import LeaseState, member_lease_name, shard_lease_name


class MemoryLeases:
    """Lease reads and conditional writes, in memory; ``log`` records what happened."""

    def __init__(self) -> None:
        self.shards: dict[int, Lease] = {}
        self.members: dict[str, Lease] = {}
        self.versions = itertools.count(1)
        self.log: list[str] = []

    async def read(self) -> Leases:
        return Leases(dict(self.shards), dict(self.members))

    def _fits(self, current: Lease | None, known: Lease | None) -> bool:
        if current is None:
            return known is None or known.resource_version is None
        return known is not None and known.resource_version == current.resource_version

    def _lease(self, name: str, holder: str | None, now: float, duration: float) -> Lease:
        return Lease(name, LeaseState(holder, now, duration), str(next(self.versions)))

    async def hold_shard(
        self, shard: int, known: Lease | None, me: str, duration: int, now: float
    ) -> bool:
        if not self._fits(self.shards.get(shard), known):
            return False
        self.shards[shard] = self._lease(shard_lease_name("t", shard), me, now, duration)
        return True

    async def hold_member(self, known: Lease | None, me: str, duration: int, now: float) -> bool:
        if not self._fits(self.members.get(me), known):
            return False
        self.members[me] = self._lease(member_lease_name("t", me), me, now, duration)
        return True

    async def release_shard(self, shard: int, known: Lease) -> bool:
        if not self._fits(self.shards.get(shard), known):
            return False
        self.log.append(f"release {shard}")
        self.shards[shard] = self._lease(known.name, None, 0.0, 1)
        return True

    async def drop_member(self, me: str) -> None:
        self.members.pop(me, None)


class Replica:
    def __init__(self, leases: MemoryLeases, name: str, clock: list[float]) -> None:
        self.gained: set[int] = set()
        self.log = leases.log
        self.manager = ShardManager(
            leases,  # type: ignore[arg-type]
            name,
            16,
            lease_seconds=15,
            renew_every=5,
            on_gained=self._gained,
            on_lost=self._lost,
            metrics=Metrics(list),
            wall=lambda: clock[0],
        )

    async def _gained(self, shards: set[int]) -> None:
        self.gained |= shards

    async def _lost(self, shards: set[int]) -> None:
        self.log.extend(f"lost {s}" for s in sorted(shards))
        self.gained -= shards


async def test_a_lone_replica_gains_every_shard() -> None:
    leases, clock = MemoryLeases(), [100.0]
    a = Replica(leases, "a", clock)
    await a.manager.tick()
    assert a.gained == set(range(16)) == set(a.manager.owned)


async def test_a_joining_replica_gets_its_share_and_the_other_stops_before_releasing() -> None:
    leases, clock = MemoryLeases(), [100.0]
    a, b = Replica(leases, "a", clock), Replica(leases, "b", clock)
    await a.manager.tick()
    await b.manager.tick()  # b is a member now, but every shard is still a's
    assert b.gained == set()
    await a.manager.tick()  # a hands back its extras
    await b.manager.tick()
    assert (len(a.gained), len(b.gained)) == (8, 8)
    assert a.gained.isdisjoint(b.gained)
    released = [line for line in leases.log if line.startswith("release")]
    for line in released:  # consuming stopped before the Lease was handed back
        assert leases.log.index(f"lost {line.split()[1]}") < leases.log.index(line)


async def test_a_frozen_replica_loses_the_shards_taken_while_it_slept() -> None:
    leases, clock = MemoryLeases(), [100.0]
    a, b = Replica(leases, "a", clock), Replica(leases, "b", clock)
    await a.manager.tick()
    clock[0] += 60  # a is frozen: its Leases and its membership expire
    await b.manager.tick()
    assert b.gained == set(range(16))
    await a.manager.tick()  # a wakes up believing it owns everything
    assert a.gained == set() and a.manager.owned == {}
    assert (
        a.manager.metrics.registry.get_sample_value("kubesaga_shard_lease_renew_failures_total")
        == 16
    )


async def test_closing_loses_every_shard_then_frees_the_leases() -> None:
    leases, clock = MemoryLeases(), [100.0]
    a, b = Replica(leases, "a", clock), Replica(leases, "b", clock)
    await a.manager.tick()
    await a.manager.close()
    assert a.gained == set() and "a" not in leases.members
    await b.manager.tick()  # at once, not after the lease duration
    assert b.gained == set(range(16))


class ForbiddenLeases(MemoryLeases):
    namespace = "kubesaga"

    async def read(self) -> Leases:
        raise ApiException(status=403, reason="Forbidden")


async def test_without_rbac_for_leases_a_replica_acts_for_every_shard() -> None:
    """Rather than for none: an upgrade that kept its own Role without Leases keeps working."""
    a = Replica(ForbiddenLeases(), "a", [100.0])
    await a.manager.round()
    assert a.gained == set(range(16))


async def test_shards_whose_gain_failed_are_gained_again_next_round() -> None:
    leases, clock = MemoryLeases(), [100.0]
    a = Replica(leases, "a", clock)
    calls: list[set[int]] = []

    async def broker_down_once(shards: set[int]) -> None:
        calls.append(set(shards))
        if len(calls) == 1:
            raise RuntimeError("Connection was not opened")
        a.gained |= shards

    a.manager.on_gained = broker_down_once
    await a.manager.round()  # the Leases are taken, acting for the shards is not
    assert a.manager.owned == {} and a.gained == set()
    clock[0] += 5
    await a.manager.round()
    assert calls == [set(range(16)), set(range(16))]
    assert a.gained == set(range(16)) == set(a.manager.owned)
