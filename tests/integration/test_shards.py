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
from kubesaga.models import API_GROUP, API_VERSION, KIND, PLURAL
from kubesaga.models.shard_key import SHARD_KEY_LABEL, SHARD_KEYS, shard_key
from kubesaga.operator.leases import LABEL_KIND, LABEL_SET, LABEL_SHARD
from kubesaga.operator.shards import SHARD_LEASE, fair_shares
from kubesaga.settings import Settings
from kubesaga.store import watching
from tests.chaos.procs import Proc, operator_proc, scrape
from tests.integration.harness import free_port, operator_task, worker_task
from tests.integration.scripted import Ledger, scripted_worker, step

pytestmark = pytest.mark.usefixtures("saga_crd")

SHARDS = 16
SHARD_EVENTS = "kubesaga_watch_events_total{watch=shard}"
CATCHALL_EVENTS = "kubesaga_watch_events_total{watch=catchall}"
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
    received = await replicas.metric(SHARD_EVENTS)
    caught = await replicas.metric(CATCHALL_EVENTS)
    print(f"\nshards={owned} writes={writes} conflicts={conflicts} unowned={unowned}")
    print(f"watch events: shard={received} catchall={caught}")
    assert sum(conflicts.values()) / len(names) < 0.05
    assert sum(unowned.values()) == 0  # every saga decided by its shard's owner
    assert all(w > 0 for w in writes.values())  # each replica did a share of the work
    assert sum(writes.values()) == 4 * len(names)  # 3 steps: 4 writes a saga, none doubled
    for pid, wrote in writes.items():
        # Each replica received its own sagas' events only: ADDED and one per write of its own
        # (the last write's may still be on its way). Every saga's, 3x as many, before.
        own = wrote / 4
        assert 4 * own <= received[pid] <= 5 * own, (pid, received[pid], wrote)
    assert sum(caught.values()) == 0  # every saga was labelled by the client: no catch-all


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


async def create_raw(
    api: client.ApiClient, namespace: str, name: str, steps: list[dict[str, Any]], **labels: str
) -> None:
    """A Saga as ``kubectl apply`` creates it: the labels given, no shard key unless given."""
    body = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"steps": steps},
    }
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, body
    )


async def labels_of(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    raw = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, name
    )
    return dict(raw["metadata"].get("labels") or {})


async def test_unlabelled_sagas_complete_through_the_catch_all_watch(
    replicas: Replicas,
    shard_settings: Settings,
    api_client: client.ApiClient,
    saga_client: AsyncSagaClient,
    prefix: str,
    namespace: str,
) -> None:
    for _ in range(3):
        await replicas.add()
    await shard_holders(api_client, shard_settings, split_fairly(replicas.live_pids()))
    names = [f"plain-{i}" for i in range(30)]
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, shard_settings):
        for name in names:
            await create_raw(api_client, namespace, name, [step(prefix, s) for s in "abc"])
        await all_completed(saga_client, names)
    each_step_dispatched_once(ledger, names)
    unowned = await replicas.metric("kubesaga_unowned_decisions_total")
    writes = await replicas.metric("kubesaga_status_writes_total")
    received = await replicas.metric(SHARD_EVENTS)
    caught = await replicas.metric(CATCHALL_EVENTS)
    print(f"\nwrites={writes} watch events: shard={received} catchall={caught}")
    assert sum(unowned.values()) == 0  # decided by the owner by name only
    assert sum(writes.values()) == 4 * len(names)
    assert sum(received.values()) == 0  # no label: no shard watch delivers them
    assert all(c >= 4 * len(names) for c in caught.values())  # every replica receives them


async def test_a_mislabelled_saga_is_relabelled_to_its_owners_watch_and_completes(
    replicas: Replicas,
    shard_settings: Settings,
    api_client: client.ApiClient,
    saga_client: AsyncSagaClient,
    prefix: str,
    namespace: str,
) -> None:
    for _ in range(3):
        await replicas.add()
    await shard_holders(api_client, shard_settings, split_fairly(replicas.live_pids()))
    names = [f"mislabelled-{i}" for i in range(10)]
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, shard_settings):
        for name in names:
            wrong = (shard_key(namespace, name) + 1) % SHARD_KEYS  # another shard's key
            labels = {SHARD_KEY_LABEL: str(wrong)}
            await create_raw(api_client, namespace, name, [step(prefix, "a")], **labels)
        sagas = await all_completed(saga_client, names)
    for saga in sagas:
        labels = await labels_of(api_client, namespace, saga.name)
        assert labels[SHARD_KEY_LABEL] == str(shard_key(namespace, saga.name)), saga.name
        assert len(set(ledger.dispatch_ids(saga.name, "a"))) == 1
    assert sum((await replicas.metric("kubesaga_unowned_decisions_total")).values()) == 0


async def test_a_label_move_of_an_in_flight_saga_keeps_its_timers(
    replicas: Replicas,
    shard_settings: Settings,
    api_client: client.ApiClient,
    saga_client: AsyncSagaClient,
    prefix: str,
    namespace: str,
) -> None:
    """Its first attempt never answers: only the owner's timeout timer retries it, so a saga
    dropped on the DELETED of the watch it left would never finish."""
    for _ in range(3):
        await replicas.add()
    await shard_holders(api_client, shard_settings, split_fairly(replicas.live_pids()))
    hanging = [step(prefix, "a", hang=[1], timeoutSeconds=3, retry={"maxAttempts": 2})]
    worker, ledger = scripted_worker(prefix)
    objects: Any = client.CustomObjectsApi(api_client)  # _content_type: not in the stubs
    async with worker_task(worker, shard_settings):
        await create_raw(api_client, namespace, "moved-in", hanging)  # catch-all, then a shard
        await saga_client.start("moved-out", hanging)  # a shard, then the catch-all
        for name in ("moved-in", "moved-out"):
            await ledger.wait_for(name, "a")
        moves = {"moved-in": str(shard_key(namespace, "moved-in")), "moved-out": None}
        for name, value in moves.items():
            await objects.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                {"metadata": {"labels": {SHARD_KEY_LABEL: value}}},
                _content_type="application/merge-patch+json",
            )
        sagas = await all_completed(saga_client, list(moves))
    for saga in sagas:
        assert ledger.attempts(saga.name, "a") == [1, 2], saga.name
        labels = await labels_of(api_client, namespace, saga.name)
        assert labels.get(SHARD_KEY_LABEL) == moves[saga.name]


async def test_a_namespace_pattern_watches_the_shards_cluster_wide(
    shard_settings: Settings, saga_client: AsyncSagaClient, prefix: str, namespace: str
) -> None:
    """A glob cannot be a request: the shard watches list every namespace and keep the ones the
    pattern accepts. Labelled sagas reach no other watch, so finishing proves it works."""
    settings = shard_settings.model_copy(update={"namespaces": [f"{namespace}*"]})
    names = [f"glob-{i}" for i in range(5)]
    worker, ledger = scripted_worker(prefix)
    async with operator_task(settings), worker_task(worker, settings):
        await start_sagas(saga_client, prefix, names)
        await all_completed(saga_client, names)
    each_step_dispatched_once(ledger, names)
