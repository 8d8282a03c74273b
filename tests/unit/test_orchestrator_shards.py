"""The orchestrator under sharding: it decides only sagas of the shards it owns, takes over a
gained shard's sagas as on start-up, and lets a lost shard's sagas go. In memory (see
orchestrator_kit); tests/integration/test_shards.py runs replicas on the platform."""

from __future__ import annotations

from kubesaga.operator import Orchestrator
from tests.unit.orchestrator_kit import NS, Rig, phase, spec, succeeded


def sharded(rig: Rig, owned: set[str]) -> Orchestrator:
    """An orchestrator on the rig that owns the sagas whose name is in ``owned``."""
    orchestrator = Orchestrator(
        rig.store, rig.broker, clock=rig.clock, owns=lambda key: key[1] in owned
    )
    rig.orchestrators.append(orchestrator)
    rig.streams.append(rig.store.watch())
    return orchestrator


async def test_a_saga_of_a_shard_it_does_not_own_is_cached_but_not_decided() -> None:
    rig = Rig(replicas=0)
    replica = sharded(rig, owned=set())
    rig.store.create("s", spec("a"))
    await rig.settle()
    assert rig.broker.published == []
    assert rig.store.status("s") == {}
    assert replica.cache.get((NS, "s")) is not None


async def test_a_gained_shard_s_sagas_are_decided_and_their_in_flight_commands_resumed() -> None:
    rig = Rig()
    rig.store.create("s", spec("a", "b"))
    await rig.settle()
    (first,) = rig.broker.published
    owned: set[str] = set()
    newcomer = sharded(rig, owned)
    newcomer.observe(await rig.store.get(NS, "s"))  # its watch's initial list
    await rig.settle()
    assert len(rig.broker.published) == 1  # not its shard: nothing re-published
    owned.add(first.saga.name)
    newcomer.take_over(newcomer.cache.keys(lambda key: key[1] in owned))
    await rig.settle()
    assert [c.dispatch_id for c in rig.broker.published] == [first.dispatch_id] * 2


async def test_a_lost_shard_s_sagas_get_no_more_timers_here() -> None:
    rig = Rig(replicas=0)
    owned: set[str] = set()
    replica = sharded(rig, owned)
    rig.store.create("s", spec("a"))
    owned.add("s")
    await rig.settle()
    assert rig.clock.pending()  # the redelivery timer of the dispatched command
    replica.let_go([(NS, "s")])
    owned.clear()
    await rig.advance(10_000)
    assert len(rig.broker.published) == 1  # no redelivery by a replica that lost the shard


async def test_a_result_for_a_saga_it_does_not_own_is_still_recorded_and_counted() -> None:
    """Results without reply_to arrive on the shared queue, at any replica: recorded all the
    same (the write is conditional), and counted as decisions outside the replica's shards."""
    rig = Rig()
    rig.store.create("s", spec("a"))
    await rig.settle()
    outsider = sharded(rig, owned=set())
    await outsider.on_result(succeeded(rig.broker.sent("a")[0]))
    await rig.settle()
    assert phase(rig.store, "s") == "Completed"
    assert outsider.metrics.registry.get_sample_value("kubesaga_unowned_decisions_total") == 1
