"""Operator replicas sharing the sagas by shard Leases: real processes, apiserver and broker.

Each test starts ``kubesaga operator`` processes (as the chaos suite does, so they can be
killed and frozen) on the test's namespace, where their shard Leases live, and follows the
Leases with a watch. Lease timings are short (``LEASE_S``) so takeovers happen within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from kubesaga import AsyncSagaClient, Saga, SagaPhase
from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.operator.leases import LABEL_KIND, LABEL_SET, LABEL_SHARD
from kubesaga.operator.shards import SHARD_LEASE, fair_shares
from kubesaga.settings import Settings
from kubesaga.store import watching
from tests.chaos.procs import Proc, operator_proc, scrape
from tests.integration.harness import free_port, worker_task
from tests.integration.scripted import Ledger, scripted_worker, step

pytestmark = pytest.mark.usefixtures("saga_crd")

SHARDS = 16
LEASE_S = 8
RENEW_S = 2.0
WAIT_S = 90


@dataclass
class Replicas:
    """Operator processes of one installation; each has its metrics port."""

    settings: Settings
    procs: list[Proc] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)
    """Metrics port by pid."""

    async def add(self) -> Proc:
        port = free_port()
        proc = operator_proc(f"operator-{len(self.procs)}", self.settings, port)
        await proc.start()
        assert proc.pid is not None
        self.ports[proc.pid] = port
        self.procs.append(proc)
        return proc

    def live_pids(self) -> set[int]:
        return {p.pid for p in self.procs if p.alive and p.pid is not None}

    async def metric(self, name: str) -> dict[int, float]:
        """One sample of every live replica, by pid."""
        return {
            pid: (await scrape(self.ports[pid])).get(name, 0.0) for pid in sorted(self.live_pids())
        }

    async def close(self) -> None:
        for proc in self.procs:
            if proc.proc is not None and proc.proc.returncode is None:
                proc.proc.send_signal(signal.SIGCONT)
            await proc.stop(grace=15)


def pid_of(holder: str | None) -> int | None:
    """Local identities are ``<host>-<pid>-<random>`` (``lease_identity``)."""
    if not holder:
        return None
    with contextlib.suppress(ValueError, IndexError):
        return int(holder.rsplit("-", 2)[-2])
    return None


async def shard_holders(
    api: client.ApiClient,
    settings: Settings,
    done: Callable[[dict[int, int | None]], bool],
    timeout: float = WAIT_S,
) -> dict[int, int | None]:
    """Watch the shard Leases until ``done(pid holding each shard)``; return that map."""
    holders: dict[int, int | None] = {}

    def see(kind: str, lease: Any) -> dict[int, int | None] | None:
        labels = lease.metadata.labels or {}
        if labels.get(LABEL_KIND) != SHARD_LEASE:
            return None
        shard = int(labels[LABEL_SHARD])
        if kind == "DELETED":
            holders.pop(shard, None)
        else:
            holders[shard] = pid_of(lease.spec.holder_identity if lease.spec else None)
        return dict(holders) if done(holders) else None

    async with asyncio.timeout(timeout):
        return await watching.watch_until(
            client.CoordinationV1Api(api).list_namespaced_lease,
            settings.pod_namespace,
            check=see,
            label_selector=f"{LABEL_SET}={settings.shard_lease_prefix}",
        )


def split_fairly(pids: set[int]) -> Callable[[dict[int, int | None]], bool]:
    """Every shard held, by these replicas only, in fair shares (16 over three: 6/5/5)."""
    want = sorted(fair_shares(SHARDS, [str(p) for p in pids]).values())

    def done(holders: dict[int, int | None]) -> bool:
        counts = Counter(holders.values())
        return len(holders) == SHARDS and set(counts) == pids and sorted(counts.values()) == want

    return done


@pytest.fixture
def shard_settings(operator_settings: Settings) -> Settings:
    return operator_settings.model_copy(
        update={
            "shards": SHARDS,
            "shard_lease_seconds": LEASE_S,
            "shard_renew_seconds": RENEW_S,
            "amqp_heartbeat_seconds": 2,  # a frozen replica's consumers are dropped in seconds
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def replicas(
    shard_settings: Settings, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[Replicas]:
    made = Replicas(shard_settings)
    try:
        yield made
    finally:
        await made.close()
        # Hundreds of sagas: the platform has no garbage collector to remove them with the
        # namespace, and tests that list every namespace's sagas (the UI's) would carry them.
        await client.CustomObjectsApi(api_client).delete_collection_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL
        )


async def start_sagas(
    saga_client: AsyncSagaClient, prefix: str, names: list[str], sleep: float = 0.0
) -> None:
    for name in names:
        await saga_client.start(
            name, [step(prefix, s, **({"sleep": sleep} if sleep else {})) for s in "abc"]
        )


async def all_completed(saga_client: AsyncSagaClient, names: list[str]) -> list[Saga]:
    sagas = [await saga_client.wait(name, WAIT_S) for name in names]
    for name, saga in zip(names, sagas, strict=True):
        assert saga.phase is SagaPhase.COMPLETED, (name, saga.phase)
    return sagas


def each_step_dispatched_once(ledger: Ledger, names: list[str]) -> None:
    """Nothing doubled: one dispatch id per step, and no compensation ran."""
    for name in names:
        for s in "abc":
            assert len(set(ledger.dispatch_ids(name, s))) == 1, (name, s)
        assert ledger.steps("undo", name) == []


async def test_three_replicas_split_the_shards_and_each_decides_only_its_own(
    replicas: Replicas,
    shard_settings: Settings,
    api_client: client.ApiClient,
    saga_client: AsyncSagaClient,
    prefix: str,
) -> None:
    for _ in range(3):
        await replicas.add()
    holders = await shard_holders(api_client, shard_settings, split_fairly(replicas.live_pids()))
    assert sorted(Counter(holders.values()).values()) == [5, 5, 6]
    names = [f"steady-{i}" for i in range(60)]
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, shard_settings):
        await start_sagas(saga_client, prefix, names)
        await all_completed(saga_client, names)
    each_step_dispatched_once(ledger, names)
    conflicts = await replicas.metric("kubesaga_status_conflicts_total")
    unowned = await replicas.metric("kubesaga_unowned_decisions_total")
    writes = await replicas.metric("kubesaga_status_writes_total")
    owned = await replicas.metric("kubesaga_shards_owned")
    print(f"\nshards={owned} writes={writes} conflicts={conflicts} unowned={unowned}")
    assert sum(conflicts.values()) / len(names) < 0.05
    assert sum(unowned.values()) == 0  # every saga decided by its shard's owner
    assert all(w > 0 for w in writes.values())  # each replica did a share of the work
    assert sum(writes.values()) == 4 * len(names)  # 3 steps: 4 writes a saga, none doubled


async def test_a_killed_replicas_shards_are_taken_over_within_a_lease_and_its_sagas_finish(
    replicas: Replicas,
    shard_settings: Settings,
    api_client: client.ApiClient,
    saga_client: AsyncSagaClient,
    prefix: str,
) -> None:
    victim, *_ = [await replicas.add() for _ in range(3)]
    await shard_holders(api_client, shard_settings, split_fairly(replicas.live_pids()))
    names = [f"killed-{i}" for i in range(30)]
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, shard_settings):
        await start_sagas(saga_client, prefix, names, sleep=0.2)
        await ledger.wait_for(names[-1], "a")  # sagas in flight on every replica
        await victim.kill()
        killed = time.monotonic()
        await shard_holders(api_client, shard_settings, split_fairly(replicas.live_pids()))
        taken_over = time.monotonic() - killed
        await all_completed(saga_client, names)
    print(f"\ntakeover after SIGKILL: {taken_over:.1f} s (lease {LEASE_S} s)")
    assert taken_over <= LEASE_S + 5
    each_step_dispatched_once(ledger, names)


async def test_a_new_replica_gets_its_share_without_any_saga_stalling_for_a_lease(
    replicas: Replicas,
    shard_settings: Settings,
    api_client: client.ApiClient,
    saga_client: AsyncSagaClient,
    prefix: str,
    namespace: str,
) -> None:
    for _ in range(2):
        await replicas.add()
    await shard_holders(api_client, shard_settings, split_fairly(replicas.live_pids()))
    seen: dict[str, list[float]] = defaultdict(list)
    watcher = asyncio.create_task(record_changes(api_client, namespace, seen))
    names: list[str] = []
    worker, ledger = scripted_worker(prefix)
    try:
        async with worker_task(worker, shard_settings):

            async def feed() -> None:
                for i in range(400):
                    await start_sagas(saga_client, prefix, [f"join-{i}"], sleep=0.1)
                    names.append(f"join-{i}")
                    await asyncio.sleep(0.05)  # a steady stream of new sagas, not a test wait

            feeding = asyncio.create_task(feed())
            joined = time.monotonic()
            await replicas.add()
            holders = await shard_holders(
                api_client, shard_settings, split_fairly(replicas.live_pids())
            )
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            await all_completed(saga_client, names)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert sorted(Counter(holders.values()).values()) == [5, 5, 6]
    stalls = {name: max((b - a for a, b in pairwise(t)), default=0.0) for name, t in seen.items()}
    worst = max(stalls.values())
    slowest = max(stalls, key=stalls.__getitem__)
    print(f"\n{len(names)} sagas across the join; longest pause of one saga: {worst:.2f} s")
    print(f"{slowest} changed at {[round(t - joined, 2) for t in seen[slowest]]} s after the join")
    assert worst < LEASE_S
    each_step_dispatched_once(ledger, [n for n in names if n in seen])


async def record_changes(
    api: client.ApiClient, namespace: str, seen: dict[str, list[float]]
) -> None:
    """When each saga changed (monotonic), until it finished: what a stall would show."""
    sagas = client.CustomObjectsApi(api)
    finished: set[str] = set()

    def note(kind: str, obj: Any) -> None:
        name = obj["metadata"]["name"]
        if name not in finished:
            seen[name].append(time.monotonic())
        if (obj.get("status") or {}).get("phase") == "Completed":
            finished.add(name)

    await watching.watch_until(
        sagas.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL, check=note
    )


async def test_a_frozen_replica_that_lost_its_leases_corrupts_nothing_when_it_wakes(
    replicas: Replicas,
    shard_settings: Settings,
    api_client: client.ApiClient,
    saga_client: AsyncSagaClient,
    prefix: str,
) -> None:
    sleeper, *_ = [await replicas.add() for _ in range(3)]
    everyone = replicas.live_pids()
    await shard_holders(api_client, shard_settings, split_fairly(everyone))
    assert sleeper.proc is not None and sleeper.pid is not None
    first = [f"frozen-{i}" for i in range(30)]
    later = [f"thawed-{i}" for i in range(30)]
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, shard_settings):
        await start_sagas(saga_client, prefix, first, sleep=0.2)
        await ledger.wait_for(first[-1], "a")
        sleeper.proc.send_signal(signal.SIGSTOP)
        await shard_holders(api_client, shard_settings, split_fairly(everyone - {sleeper.pid}))
        await start_sagas(saga_client, prefix, later, sleep=0.2)
        sleeper.proc.send_signal(signal.SIGCONT)  # it still believes it owns its old shards
        sagas = await all_completed(saga_client, first + later)
        await shard_holders(api_client, shard_settings, split_fairly(everyone))
    each_step_dispatched_once(ledger, first + later)
    for saga in sagas:
        assert saga.status is not None
        assert [s.attempt for s in saga.status.steps] == [1, 1, 1], saga.name
