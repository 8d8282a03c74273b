"""Sagas end to end: real apiserver, real broker, the operator and a scripted worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from typing import Any

from kubernetes_asyncio import client as k8s

from kubesaga import AsyncSagaClient, SagaPhase, StepPhase
from kubesaga.broker import Broker
from kubesaga.models import (
    API_GROUP,
    API_VERSION,
    PLURAL,
    CommandKind,
    ErrorInfo,
    Result,
    ResultStatus,
    SagaRef,
)
from kubesaga.settings import Settings
from kubesaga.store import watching
from tests.integration.harness import broker_settings, next_dead_letter, worker_task
from tests.integration.scripted import scripted_worker, step

WAIT_S = 60


async def test_order_saga_completes_and_outputs_flow_to_later_steps(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "order-1",
            [
                step(prefix, "create_order"),
                step(prefix, "reserve_inventory"),
                step(prefix, "charge_payment"),
            ],
            {"customer": "c-1"},
        )
        saga = await saga_client.wait("order-1", WAIT_S)
    assert saga.phase is SagaPhase.COMPLETED
    assert saga.status is not None and saga.status.progress == "3/3"
    assert ledger.steps("do", "order-1") == [
        "create_order",
        "reserve_inventory",
        "charge_payment",
    ]
    payment = saga.status.step("charge_payment")
    assert payment.output == {
        "step": "charge_payment",
        "attempt": 1,
        "seen": ["create_order", "reserve_inventory"],
    }
    assert saga.completed_steps() == ["create_order", "reserve_inventory", "charge_payment"]


async def test_payment_failure_compensates_inventory_then_order(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "order-2",
            [
                step(prefix, "create_order"),
                step(prefix, "reserve_inventory"),
                step(prefix, "charge_payment", fail="permanent"),
            ],
        )
        saga = await saga_client.wait("order-2", WAIT_S)
    assert saga.phase is SagaPhase.COMPENSATED
    assert ledger.steps("undo", "order-2") == ["reserve_inventory", "create_order"]
    assert saga.status is not None
    assert saga.status.step("charge_payment").phase is StepPhase.FAILED
    error = saga.status.step("charge_payment").error
    assert error is not None and error.type == "Refused"
    assert "charge_payment" in saga.status.message


async def test_retryable_failure_is_retried_and_succeeds(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    retry = {"maxAttempts": 3, "backoffSeconds": 0.2}
    async with worker_task(worker, running_operator):
        await saga_client.start("flaky", [step(prefix, "a", fail="retryable-once", retry=retry)])
        saga = await saga_client.wait("flaky", WAIT_S)
    assert saga.phase is SagaPhase.COMPLETED
    assert ledger.attempts("flaky", "a") == [1, 2]
    assert saga.status is not None and saga.status.step("a").attempt == 2


async def test_a_handler_asked_retry_delay_is_kept_in_status_and_waited_for(
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    prefix: str,
    api_client: k8s.ApiClient,
    namespace: str,
) -> None:
    """RetryableError(retry_after=…) travels in the result, survives the CRD's schema (pruning
    would drop an unknown field silently) and sets the next attempt's time."""
    worker, ledger = scripted_worker(prefix)
    retry = {"maxAttempts": 3, "backoffSeconds": 0.1, "maxBackoffSeconds": 60}
    seen: list[dict[str, Any]] = []

    def waiting(kind: str, obj: Any) -> bool | None:
        for st in (obj.get("status") or {}).get("steps") or []:
            if st.get("name") == "a" and (st.get("error") or {}).get("retryAfterSeconds"):
                seen.append(st)
                return True
        return None

    async with worker_task(worker, running_operator):
        await saga_client.start(
            "throttled",
            [step(prefix, "a", fail="retryable-once", retry_after=1.5, retry=retry)],
        )
        async with asyncio.timeout(WAIT_S):
            await watching.watch_until(
                k8s.CustomObjectsApi(api_client).list_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                check=waiting,
                field_selector="metadata.name=throttled",
            )
        saga = await saga_client.wait("throttled", WAIT_S)
    assert saga.phase is SagaPhase.COMPLETED
    assert ledger.attempts("throttled", "a") == [1, 2]
    waited = seen[0]
    assert waited["error"]["retryAfterSeconds"] == 1.5
    assert waited["nextAttemptAt"] is not None


async def test_timed_out_attempt_is_retried(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    retry = {"maxAttempts": 2, "backoffSeconds": 0}
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "slow", [step(prefix, "a", hang=[1], timeoutSeconds=1, retry=retry)]
        )
        saga = await saga_client.wait("slow", WAIT_S)
    assert saga.phase is SagaPhase.COMPLETED
    assert ledger.attempts("slow", "a") == [1, 2]


async def test_parallel_branches_run_at_the_same_time(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "dag",
            [
                step(prefix, "root", dependsOn=[]),
                step(prefix, "left", dependsOn=["root"], meet="branches"),
                step(prefix, "right", dependsOn=["root"], meet="branches"),
                step(prefix, "join", dependsOn=["left", "right"]),
            ],
        )
        saga = await saga_client.wait("dag", WAIT_S)
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    done = ledger.steps("do", "dag")
    assert done[0] == "root" and done[-1] == "join"


async def test_manual_compensation_of_a_running_saga(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "stop-me", [step(prefix, "a"), step(prefix, "b", sleep=1.5), step(prefix, "c")]
        )
        await _wait_for_step(saga_client, "stop-me", "b", StepPhase.RUNNING)
        await saga_client.compensate("stop-me")
        saga = await saga_client.wait("stop-me", WAIT_S)
    assert saga.phase is SagaPhase.COMPENSATED
    assert saga.status is not None and saga.status.reason == "CompensationRequested"
    assert "c" not in ledger.steps("do", "stop-me", event="start")
    assert ledger.steps("undo", "stop-me") == ["b", "a"]
    assert saga.status.step("c").phase is StepPhase.SKIPPED


async def test_manual_compensation_of_a_completed_saga(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start("undo-me", [step(prefix, "a"), step(prefix, "b")])
        assert (await saga_client.wait("undo-me", WAIT_S)).is_completed()
        await saga_client.compensate("undo-me")
        saga = await saga_client.wait("undo-me", WAIT_S)
    assert saga.phase is SagaPhase.COMPENSATED
    assert ledger.steps("undo", "undo-me") == ["b", "a"]


async def test_compensation_that_keeps_failing_ends_failed_with_the_reason(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    worker, _ = scripted_worker(prefix)
    retry = {"maxAttempts": 2, "backoffSeconds": 0.1}
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "stuck-refund",
            [
                step(prefix, "order"),
                step(prefix, "payment", undo_fail="retryable", retry=retry),
                step(prefix, "ship", fail="permanent"),
            ],
        )
        saga = await saga_client.wait("stuck-refund", WAIT_S)
    assert saga.phase is SagaPhase.FAILED
    assert saga.status is not None and saga.status.reason == "CompensationFailed"
    assert "compensation of payment failed" in saga.status.message
    assert "left uncompensated: order" in saga.status.message
    assert saga.status.step("payment").phase is StepPhase.COMPENSATION_FAILED


async def test_forged_and_duplicate_results_change_nothing(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str, amqp_url: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        started = await saga_client.start("guarded", [step(prefix, "a"), step(prefix, "b")])
        saga = await saga_client.wait("guarded", WAIT_S)
        assert saga.status is not None
        recorded = saga.status.step("a")
        assert recorded.dispatch_id is not None
        ref = SagaRef(namespace=started.namespace, name="guarded", uid=started.uid)
        broker = await Broker.connect(broker_settings(running_operator))
        try:
            duplicate = Result(
                dispatch_id=recorded.dispatch_id,
                saga=ref,
                step="a",
                kind=CommandKind.EXECUTE,
                attempt=1,
                status=ResultStatus.FAILED,
                error=ErrorInfo(message="late failure"),
            )
            await broker.publish_result(duplicate)
            forged = duplicate.model_copy(update={"dispatch_id": "guessed"})
            await broker.publish_result(forged)
            letter = await next_dead_letter(amqp_url, running_operator.dead_letter_queue)
        finally:
            await broker.close()
    assert json.loads(letter.body)["dispatchId"] == "guessed"
    assert "dispatch id" in str((letter.headers or {}).get("x-kubesaga-reason"))
    after = await saga_client.get("guarded")
    assert after.phase is SagaPhase.COMPLETED
    assert after.status is not None and after.status.step("a").output == recorded.output
    assert ledger.attempts("guarded", "a") == [1]


async def test_malformed_message_is_dead_lettered_while_sagas_go_on(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str, amqp_url: str
) -> None:
    import aio_pika

    worker, _ = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(b"{not json"), routing_key=running_operator.results_queue
            )
        letter = await next_dead_letter(amqp_url, running_operator.dead_letter_queue)
        await saga_client.start("unbothered", [step(prefix, "a")])
        saga = await saga_client.wait("unbothered", WAIT_S)
    assert letter.body == b"{not json"
    assert (letter.headers or {}).get("x-kubesaga-reason")
    assert saga.phase is SagaPhase.COMPLETED


async def test_kubectl_and_kubesaga_get_show_phase_progress_and_steps(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str, namespace: str
) -> None:
    worker, _ = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start("shown", [step(prefix, "a"), step(prefix, "b", fail="permanent")])
        await saga_client.wait("shown", WAIT_S)
    table = await _run("kubectl", "get", "sagas", "-n", namespace)
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "PHASE", "PROGRESS", "CURRENT"]
    assert row.split()[:3] == ["shown", "Compensated", "0/2"]
    tree = await _run(sys.executable, "-m", "kubesaga", "get", "shown", "-n", namespace)
    assert "Compensated" in tree and "b  Failed" in tree and "error Refused" in tree
    assert "a  Compensated" in tree


async def _run(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "200"}
    proc = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def _wait_for_step(
    client: AsyncSagaClient, name: str, step_name: str, phase: StepPhase
) -> None:
    """Watch until a step reaches ``phase`` (``AsyncSagaClient.watch``, not a sleep loop)."""
    async with contextlib.aclosing(client.watch(name, WAIT_S)) as updates:
        async for saga in updates:
            if saga.status is not None and saga.status.step(step_name).phase is phase:
                return
    raise AssertionError(f"saga {name} settled before step {step_name} was {phase}")
