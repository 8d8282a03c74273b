"""Faults on the real platform: crashed operators and workers, two replicas, a broker restart.

Processes that must die without cleanup are real processes killed with SIGKILL (the operator via
``OperatorProcess``, a worker via ``kubesaga worker``). Every wait is on a watch, a log line or a
ledger event, never a sleep. The broker-restart test restarts the RabbitMQ of the platform
(``hack/testenv.sh restart-broker``): do not share that platform with a concurrent session.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from kubernetes_asyncio import client as k8s
from prometheus_client.parser import text_string_to_metric_families

from kubesaga import AsyncSagaClient, SagaPhase, StepContext, StepPhase, Worker
from kubesaga.broker import Broker, action_queue
from kubesaga.client.saga import Saga
from kubesaga.models import API_GROUP, API_VERSION, PLURAL, SagaStatus, parse_status
from kubesaga.settings import Settings
from kubesaga.store.watching import watch_until
from tests.integration.harness import (
    OperatorProcess,
    broker_settings,
    free_port,
    operator_task,
    worker_task,
)
from tests.integration.scripted import Ledger, scripted_worker, step
from tests.integration.test_shards import shard_holders, split_fairly

WAIT_S = 90
REPO_ROOT = Path(__file__).resolve().parents[2]
TESTENV = REPO_ROOT / "hack" / "testenv.sh"

pytestmark = pytest.mark.usefixtures("saga_crd")


# ------------------------------------------------------------------------------ helpers


async def watch_status(
    saga_client: AsyncSagaClient, name: str, until: Callable[[SagaStatus], bool]
) -> SagaStatus:
    """Watch the saga until its status satisfies ``until``; return that status."""

    def check(kind: str, obj: Any) -> SagaStatus | None:
        status = parse_status(obj.get("status")) if kind != "DELETED" else None
        return status if status is not None and until(status) else None

    async with asyncio.timeout(WAIT_S):
        return await watch_until(
            k8s.CustomObjectsApi(saga_client.api).list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            saga_client.namespace,
            PLURAL,
            check=check,
            field_selector=f"metadata.name={name}",
        )


def dispatched(step_name: str) -> Callable[[SagaStatus], bool]:
    """The step's command was recorded in status (it is Running with a dispatch id)."""

    def check(status: SagaStatus) -> bool:
        s = status.step(step_name)
        return s.phase is StepPhase.RUNNING and s.dispatch_id is not None

    return check


def assert_each_step_ran_once(ledger: Ledger, saga: Saga, kind: str = "do") -> None:
    """Every step that ran did so once, with the dispatch id recorded in the saga's status."""
    assert saga.status is not None
    for s in saga.status.steps:
        ids = ledger.dispatch_ids(saga.name, s.name, kind)
        recorded = (
            s.dispatch_id if kind == "do" else (s.compensation and s.compensation.dispatch_id)
        )
        if recorded is None:
            assert ids == [], (saga.name, s.name, ids)
            continue
        assert ids == [recorded], f"{saga.name}/{s.name} {kind}: ran as {ids}, recorded {recorded}"


async def purge(amqp_url: str, queue: str) -> int:
    """Drop every ready message of ``queue``; returns how many there were."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)
        purged = await q.purge()
        return int(purged.message_count or 0)


async def ready_messages(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def scrape(port: int) -> dict[str, float]:
    """The operator's /metrics as ``{"name{label=value}": value}`` (``_total`` samples)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def unfinished(saga_client: AsyncSagaClient, operators: list[OperatorProcess]) -> str:
    """What a test that timed out waiting should say: the unfinished sagas and the logs."""
    lines = []
    for saga in await saga_client.list_active():
        steps = saga.status.steps if saga.status else []
        lines.append(
            f"{saga.name} {saga.phase.value}: "
            + ", ".join(f"{s.name} {s.phase.value} {s.dispatch_id}" for s in steps)
        )
    for i, operator in enumerate(operators):
        lines += [f"--- operator {i}", *operator.log[-40:]]
    return "\n".join(lines)


# ------------------------------------------------------------------- 1. operator crash


async def test_operator_killed_mid_saga_is_resumed_by_a_new_operator(
    operator_settings: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    first, second = OperatorProcess(operator_settings), OperatorProcess(operator_settings)
    try:
        await first.start()
        async with worker_task(worker, operator_settings):
            await saga_client.start(
                "crash", [step(prefix, "a"), step(prefix, "b", sleep=1.0), step(prefix, "c")]
            )
            await ledger.wait_for("crash", "b", timeout=WAIT_S)
            await first.kill()
            # b's result is published while no operator runs; a saga is created meanwhile too.
            await ledger.wait_for("crash", "b", event="end", timeout=WAIT_S)
            await saga_client.start("while-down", [step(prefix, "a"), step(prefix, "b")])
            await second.start()
            saga = await saga_client.wait("crash", WAIT_S)
            late = await saga_client.wait("while-down", WAIT_S)
    finally:
        await first.stop()
        await second.stop()
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    assert late.phase is SagaPhase.COMPLETED, late.status
    assert ledger.steps("do", "crash") == ["a", "b", "c"]
    assert_each_step_ran_once(ledger, saga)
    assert_each_step_ran_once(ledger, late)
    assert saga.status is not None and saga.status.step("b").attempt == 1


# ------------------------------------------- 2. a command recorded but never delivered


async def test_command_recorded_but_never_published_is_republished_on_resume(
    operator_settings: Settings, saga_client: AsyncSagaClient, prefix: str, amqp_url: str
) -> None:
    """The window between the status write and the publish, made deterministic.

    No worker runs, so the command of step a stays in its queue; the operator is killed once
    status records the dispatch and the queue is purged: as if the process had died after the
    write and before the publish. The next operator must re-publish it (same dispatch id).
    """
    # Far beyond the wait: only the resume on first sight can bring the command back.
    assert operator_settings.redeliver_after_seconds > 3 * WAIT_S
    worker, ledger = scripted_worker(prefix)
    first, second = OperatorProcess(operator_settings), OperatorProcess(operator_settings)
    broker = await Broker.connect(broker_settings(operator_settings))
    try:
        await broker.declare_action(f"{prefix}.do")  # so the purge finds the queue in any case
        await first.start()
        await saga_client.start("lost", [step(prefix, "a"), step(prefix, "b")])
        status = await watch_status(saga_client, "lost", dispatched("a"))
        recorded = status.step("a").dispatch_id
        await first.kill()
        await purge(amqp_url, action_queue(f"{prefix}.do"))
        assert await ready_messages(amqp_url, action_queue(f"{prefix}.do")) == 0
        await second.start()
        async with worker_task(worker, operator_settings):
            saga = await saga_client.wait("lost", WAIT_S)
    finally:
        await broker.close()
        await first.stop()
        await second.stop()
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    assert ledger.dispatch_ids("lost", "a") == [recorded]
    assert_each_step_ran_once(ledger, saga)


async def test_lost_command_is_republished_after_the_redelivery_interval(
    operator_settings: Settings, saga_client: AsyncSagaClient, prefix: str, amqp_url: str
) -> None:
    """A live operator whose command vanished (taken and dropped) publishes it again."""
    settings = operator_settings.model_copy(update={"redeliver_after_seconds": 1.0})
    worker, ledger = scripted_worker(prefix)
    broker = await Broker.connect(broker_settings(settings))
    connection = await aio_pika.connect(amqp_url)
    dropped: str | None = None
    try:
        await broker.declare_action(f"{prefix}.do")
        channel = await connection.channel()
        queue = await channel.get_queue(action_queue(f"{prefix}.do"), ensure=True)
        async with operator_task(settings):
            await saga_client.start("dropped", [step(prefix, "a")])
            async with asyncio.timeout(WAIT_S), queue.iterator() as messages:
                async for message in messages:
                    await message.ack()  # taken and never answered: lost
                    dropped = message.message_id
                    break
            await channel.close()
            async with worker_task(worker, settings):
                saga = await saga_client.wait("dropped", WAIT_S)
    finally:
        await connection.close()
        await broker.close()
    assert dropped is not None
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    assert ledger.dispatch_ids("dropped", "a") == [dropped]
    assert_each_step_ran_once(ledger, saga)


# ------------------------------------------------------------------- 3. worker crash

VICTIM_ACTION = os.environ.get("KUBESAGA_TEST_VICTIM_ACTION", "test.victim")
victim = Worker("victim")


@victim.step(VICTIM_ACTION)
async def hold(ctx: StepContext) -> dict[str, Any]:
    """Says which command it got, then never finishes: the process is killed meanwhile."""
    print(f"started {ctx.saga_name} {ctx.step_name} {ctx.dispatch_id}", flush=True)
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_worker_killed_mid_step_its_command_is_redelivered_and_finished(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    env = {
        **os.environ,
        "KUBESAGA_AMQP_URL": running_operator.amqp_url,
        "KUBESAGA_RESULTS_QUEUE": running_operator.results_queue,
        "KUBESAGA_DEAD_LETTER_QUEUE": running_operator.dead_letter_queue,
        "KUBESAGA_TEST_VICTIM_ACTION": f"{prefix}.do",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubesaga",
        "worker",
        "tests.integration.test_faults:victim",
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    worker, ledger = scripted_worker(prefix)
    try:
        await saga_client.start("orphaned", [step(prefix, "a"), step(prefix, "b")])
        async with asyncio.timeout(WAIT_S):
            line = (await proc.stdout.readline()).decode().split()
        assert line[:3] == ["started", "orphaned", "a"], line
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        async with worker_task(worker, running_operator):
            saga = await saga_client.wait("orphaned", WAIT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    assert saga.status is not None and saga.status.step("a").attempt == 1
    assert ledger.dispatch_ids("orphaned", "a") == [line[3]]  # the very command the victim had
    assert_each_step_ran_once(ledger, saga)


# --------------------------------------------------------------- 4. two replicas at once

GOOD_SAGAS = 20
FAILING_SAGAS = 4


async def test_two_operator_replicas_finish_every_saga_without_lost_updates(
    operator_settings: Settings,
    saga_client: AsyncSagaClient,
    prefix: str,
    amqp_url: str,
    api_client: k8s.ApiClient,
) -> None:
    ports = [free_port(), free_port()]
    replicas = [
        OperatorProcess(operator_settings.model_copy(update={"metrics_port": port}))
        for port in ports
    ]
    worker, ledger = scripted_worker(prefix)
    good = [f"ok-{i}" for i in range(GOOD_SAGAS)]
    bad = [f"refused-{i}" for i in range(FAILING_SAGAS)]
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        # The replicas share the sagas by shard: until the second one has its share, the first
        # decides every saga (and a quick test can end before the split; a CI run did).
        pids = {r.proc.pid for r in replicas if r.proc is not None}
        await shard_holders(api_client, operator_settings, split_fairly(pids))
        async with worker_task(worker, operator_settings):
            await asyncio.gather(
                *(saga_client.start(n, [step(prefix, s) for s in ("a", "b", "c")]) for n in good),
                *(
                    saga_client.start(
                        n,
                        [step(prefix, "a"), step(prefix, "b"), step(prefix, "c", fail="permanent")],
                    )
                    for n in bad
                ),
            )
            try:
                sagas = await asyncio.gather(*(saga_client.wait(n, WAIT_S) for n in good + bad))
            except TimeoutError:
                raise AssertionError(await unfinished(saga_client, replicas)) from None
        metrics = await asyncio.gather(*(scrape(p) for p in ports))
        dead_letters = await ready_messages(amqp_url, operator_settings.dead_letter_queue)
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
    phases = Counter(s.phase for s in sagas)
    assert phases == {SagaPhase.COMPLETED: GOOD_SAGAS, SagaPhase.COMPENSATED: FAILING_SAGAS}
    for saga in sagas:
        assert_each_step_ran_once(ledger, saga)
        assert_each_step_ran_once(ledger, saga, kind="undo")
        assert saga.status is not None
        for s in saga.status.steps:
            if s.phase in (StepPhase.SUCCEEDED, StepPhase.COMPENSATED):
                # no lost update: each output is there, from attempt 1, after its predecessors
                seen = {"a": [], "b": ["a"], "c": ["a", "b"]}[s.name]
                assert s.output == {"step": s.name, "attempt": 1, "seen": seen}
    for name in bad:
        assert ledger.steps("undo", name) == ["b", "a"]
    writes = [m.get("kubesaga_status_writes_total", 0.0) for m in metrics]
    conflicts = [m.get("kubesaga_status_conflicts_total", 0.0) for m in metrics]
    results = {
        k: sum(m.get(k, 0.0) for m in metrics)
        for k in {k for m in metrics for k in m if k.startswith("kubesaga_results_total")}
    }
    print(
        f"\ntwo replicas: status writes {writes}, conflicts {conflicts}, results {results}, "
        f"dead letters {dead_letters}"
    )
    assert all(w > 0 for w in writes), "both replicas wrote status"  # both took part
    assert dead_letters == 0, "a result was refused by a replica"


# ------------------------------------------------------------------- 5. broker restart


def restart_broker() -> None:
    proc = subprocess.run(
        [str(TESTENV), "restart-broker"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def platform_broker_is_ours(amqp_url: str) -> bool:
    proc = subprocess.run(
        [str(TESTENV), "status"], capture_output=True, text=True, timeout=30, check=False
    )
    return proc.returncode == 0 and f"KUBESAGA_AMQP_URL={amqp_url}" in proc.stdout.splitlines()


BROKER_SAGAS = 6


async def test_broker_restarted_mid_saga_every_saga_finishes(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str, amqp_url: str
) -> None:
    if not await asyncio.to_thread(platform_broker_is_ours, amqp_url):
        pytest.skip("the broker was not started by hack/testenv.sh, so it cannot restart it")
    worker, ledger = scripted_worker(prefix)
    names = [f"weather-{i}" for i in range(BROKER_SAGAS)]
    witness = await aio_pika.connect(amqp_url)  # a plain connection: closed by the restart
    dropped = asyncio.Event()
    witness.close_callbacks.add(lambda *_: dropped.set())
    try:
        async with worker_task(worker, running_operator):
            await asyncio.gather(
                *(
                    saga_client.start(n, [step(prefix, s, sleep=1.0) for s in ("a", "b", "c")])
                    for n in names
                )
            )
            await asyncio.gather(*(ledger.wait_for(n, "a", timeout=WAIT_S) for n in names))
            await asyncio.to_thread(restart_broker)
            async with asyncio.timeout(WAIT_S):  # the restart really cut the clients off
                await dropped.wait()
            sagas = await asyncio.gather(*(saga_client.wait(n, WAIT_S) for n in names))
    finally:
        await witness.close()
    for saga in sagas:
        assert saga.phase is SagaPhase.COMPLETED, saga.status
        assert ledger.steps("do", saga.name) == ["a", "b", "c"]
        assert_each_step_ran_once(ledger, saga)


# ---------------------------------------------------------------- 6. an invalid saga


async def test_saga_with_a_dependency_cycle_fails_as_invalid_while_others_complete(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        # The CRD (and the client) accept it: only the engine sees the cycle.
        await saga_client.start(
            "circular",
            [step(prefix, "a", dependsOn=["b"]), step(prefix, "b", dependsOn=["a"])],
        )
        await saga_client.start("sound", [step(prefix, "a"), step(prefix, "b")])
        bad = await saga_client.wait("circular", WAIT_S)
        good = await saga_client.wait("sound", WAIT_S)
    assert bad.phase is SagaPhase.FAILED
    assert bad.status is not None and bad.status.reason == "InvalidSpec"
    assert "dependency cycle" in bad.status.message
    assert "a -> b -> a" in bad.status.message or "b -> a -> b" in bad.status.message
    valid = [c for c in bad.status.conditions if c.type == "Valid"]
    assert [(c.status, c.reason) for c in valid] == [("False", "InvalidSpec")]
    assert ledger.steps("do", "circular", event="start") == []
    assert good.phase is SagaPhase.COMPLETED, good.status
