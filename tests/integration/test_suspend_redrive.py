"""Suspend/resume and redrive on the platform: real apiserver, real broker, real operator.

Every wait is on a watch (the saga, the Events) or on a handler's own signal; the operator is
killed with SIGKILL as a process (``OperatorProcess``) while a saga is suspended and in the
middle of a redrive, and the next one carries on from status alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from kubesaga import (
    AsyncSagaClient,
    SagaNotRedrivable,
    SagaPhase,
    StepPhase,
)
from kubesaga.client import Saga
from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.settings import Settings
from kubesaga.store import watching
from tests.integration.gateway import gateway_worker, refund_saga
from tests.integration.harness import OperatorProcess, cli, worker_task
from tests.integration.scripted import scripted_worker, step
from tests.integration.test_crd_validation import kubectl

WAIT_S = 90


async def saga_until(
    api_client: k8s.ApiClient, namespace: str, name: str, wanted: Callable[[Saga], bool]
) -> Saga:
    """Watch one saga until ``wanted`` holds; return that snapshot."""

    def check(kind: str, raw: Any) -> Saga | None:
        saga = Saga.from_raw(raw)
        return saga if kind != "DELETED" and wanted(saga) else None

    async with asyncio.timeout(WAIT_S):
        return await watching.watch_until(
            k8s.CustomObjectsApi(api_client).list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            check=check,
            field_selector=f"metadata.name={name}",
        )


async def all_until(
    api_client: k8s.ApiClient,
    namespace: str,
    selector: str,
    count: int,
    wanted: Callable[[Saga], bool],
) -> dict[str, Saga]:
    """Watch the sagas ``selector`` picks until ``count`` of them, all ``wanted``."""
    latest: dict[str, Saga] = {}

    def check(kind: str, raw: Any) -> dict[str, Saga] | None:
        saga = Saga.from_raw(raw)
        if kind == "DELETED":
            latest.pop(saga.name, None)
        else:
            latest[saga.name] = saga
        done = len(latest) == count and all(wanted(s) for s in latest.values())
        return dict(latest) if done else None

    async with asyncio.timeout(WAIT_S):
        return await watching.watch_until(
            k8s.CustomObjectsApi(api_client).list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            check=check,
            label_selector=selector,
        )


async def event_seen(api_client: k8s.ApiClient, namespace: str, name: str, reason: str) -> Any:
    """Watch the saga's Events until one with ``reason`` arrives; return it."""

    def check(kind: str, event: Any) -> Any:
        return event if kind != "DELETED" and event.reason == reason else None

    async with asyncio.timeout(WAIT_S):
        return await watching.watch_until(
            k8s.CoreV1Api(api_client).list_namespaced_event,
            namespace,
            check=check,
            field_selector=f"involvedObject.name={name}",
        )


def phase_is(phase: SagaPhase) -> Callable[[Saga], bool]:
    return lambda saga: saga.phase is phase and saga.status is not None


def step_is(name: str, phase: StepPhase) -> Callable[[Saga], bool]:
    return lambda saga: saga.status is not None and saga.status.step(name).phase is phase


# ------------------------------------------------------------------------------ suspend


async def test_a_suspended_saga_records_the_step_in_flight_and_dispatches_nothing_more(
    running_operator: Settings,
    kubeconfig: str,
    saga_client: AsyncSagaClient,
    api_client: k8s.ApiClient,
    namespace: str,
    prefix: str,
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        handle = await saga_client.start(
            "held", [step(prefix, "a"), step(prefix, "b", sleep=1.0), step(prefix, "c")]
        )
        await ledger.wait_for("held", "b", timeout=WAIT_S)
        await handle.suspend()
        held = await saga_until(
            api_client,
            namespace,
            "held",
            lambda s: phase_is(SagaPhase.SUSPENDED)(s) and step_is("b", StepPhase.SUCCEEDED)(s),
        )
        event = await event_seen(api_client, namespace, "held", "Suspended")
        assert held.status is not None and held.status.resume_phase is SagaPhase.RUNNING
        assert held.status.step("c").phase is StepPhase.PENDING
        assert held.status.step("c").attempt == 0, "c was dispatched while suspended"
        assert event.type == "Normal" and "nothing is dispatched" in event.message
        wide = ("get", "sagas", "held", "-n", namespace, "-o", "wide")
        code, out, err = await kubectl(kubeconfig, *wide)
        assert code == 0, err
        row = out.split("\n")[1].split()  # NAME PHASE PROGRESS [CURRENT] REASON RESUMES-TO AGE
        assert (row[1], row[2], row[-3], row[-2]) == ("Suspended", "2/3", "Suspended", "Running")
        await handle.resume()
        saga = await handle.wait(WAIT_S)
        resumed = await event_seen(api_client, namespace, "held", "Resumed")
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    assert saga.status is not None and saga.status.resume_phase is None
    assert ledger.steps("do", "held") == ["a", "b", "c"]
    assert resumed.message == "resumed Running"


async def test_operator_killed_while_suspended_keeps_the_saga_suspended(
    operator_settings: Settings,
    saga_crd: object,
    saga_client: AsyncSagaClient,
    api_client: k8s.ApiClient,
    namespace: str,
    prefix: str,
) -> None:
    worker, ledger = scripted_worker(prefix)
    first, second = OperatorProcess(operator_settings), OperatorProcess(operator_settings)
    try:
        await first.start()
        async with worker_task(worker, operator_settings):
            await saga_client.start(
                "killed", [step(prefix, "a", sleep=1.5), step(prefix, "b"), step(prefix, "c")]
            )
            await ledger.wait_for("killed", "a", timeout=WAIT_S)
            await saga_client.suspend("killed")
            await saga_until(api_client, namespace, "killed", phase_is(SagaPhase.SUSPENDED))
            await first.kill()
            # a's result is published while no operator runs; the next one records it.
            await ledger.wait_for("killed", "a", event="end", timeout=WAIT_S)
            await second.start()
            held = await saga_until(
                api_client, namespace, "killed", step_is("a", StepPhase.SUCCEEDED)
            )
            assert held.phase is SagaPhase.SUSPENDED
            assert held.status is not None and held.status.step("b").attempt == 0
            await saga_client.resume("killed")
            saga = await saga_client.wait("killed", WAIT_S)
    finally:
        await first.stop()
        await second.stop()
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    # A command may be re-published to its handler (same dispatch id) by the next operator.
    assert list(dict.fromkeys(ledger.steps("do", "killed"))) == ["a", "b", "c"]
    for name in ("a", "b", "c"):
        assert len(set(ledger.dispatch_ids("killed", name))) == 1, name


async def test_kubesaga_suspend_and_resume_by_label_drive_a_hundred_sagas(
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    api_client: k8s.ApiClient,
    namespace: str,
    prefix: str,
    kubeconfig: str,
) -> None:
    """No worker runs at first: each saga's first step waits in its queue while the CLI
    suspends all of them; the worker then answers those, and nothing else is dispatched."""
    names = [f"shop-{i:03}" for i in range(100)]
    gate = asyncio.Semaphore(16)

    async def start(name: str, labels: dict[str, str]) -> None:
        async with gate:
            await saga_client.start(name, [step(prefix, "a"), step(prefix, "b")], labels=labels)

    await asyncio.gather(*(start(n, {"app": "shop"}) for n in names))
    await start("bystander", {"app": "other"})
    await all_until(api_client, namespace, "app=shop", 100, step_is("a", StepPhase.RUNNING))

    suspended = await cli(
        running_operator, kubeconfig, "suspend", "-l", "app=shop", "-n", namespace
    )
    assert sorted(suspended) == sorted(f"saga.kubesaga.io/{n} suspended" for n in names)
    await all_until(api_client, namespace, "app=shop", 100, phase_is(SagaPhase.SUSPENDED))

    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        bystander = await saga_client.wait("bystander", WAIT_S)
        assert bystander.phase is SagaPhase.COMPLETED
        held = await all_until(
            api_client,
            namespace,
            "app=shop",
            100,
            lambda s: phase_is(SagaPhase.SUSPENDED)(s) and step_is("a", StepPhase.SUCCEEDED)(s),
        )
        assert all(s.status is not None and s.status.step("b").attempt == 0 for s in held.values())
        resumed = await cli(
            running_operator, kubeconfig, "resume", "-l", "app=shop", "-n", namespace
        )
        assert len(resumed) == 100
        final = await all_until(api_client, namespace, "app=shop", 100, lambda s: s.is_settled())
    assert {s.phase for s in final.values()} == {SagaPhase.COMPLETED}
    assert all(ledger.steps("do", n) == ["a", "b"] for n in names)


# ------------------------------------------------------------------------------ redrive


async def test_redrive_after_a_human_fix_compensates_what_was_left_in_reverse_order(
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    api_client: k8s.ApiClient,
    namespace: str,
    prefix: str,
) -> None:
    worker, ledger, gateway = gateway_worker(prefix)
    async with worker_task(worker, running_operator):
        handle = await saga_client.start("refund", refund_saga(prefix))
        failed = await handle.wait(WAIT_S)
        assert failed.phase is SagaPhase.FAILED and failed.status is not None
        assert failed.status.reason == "CompensationFailed"
        assert failed.status.step("order").phase is StepPhase.SUCCEEDED, "blocked by payment"
        gateway.down = False
        await handle.redrive()
        saga = await handle.wait(WAIT_S)
        event = await event_seen(api_client, namespace, "refund", "Redriven")
    assert saga.phase is SagaPhase.COMPENSATED, saga.status
    assert ledger.steps("undo", "refund") == ["payment", "order"]
    payment = saga.status.step("payment") if saga.status else None
    assert payment is not None and payment.output == {"step": "payment"}
    history = payment.compensation_history or []
    assert [h.error.type for h in history if h.error] == ["GatewayDown"]
    assert saga.status is not None and saga.status.observed_redrive == 1
    assert len(set(ledger.dispatch_ids("refund", "payment", kind="undo"))) == 2
    assert ledger.dispatch_ids("refund", "order", kind="undo") == [
        saga.status.step("order").compensation.dispatch_id  # type: ignore[union-attr]
    ]
    assert "payment" in event.message


async def test_redrive_of_a_completed_saga_is_refused_by_the_client_and_by_the_operator(
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    api_client: k8s.ApiClient,
    namespace: str,
    prefix: str,
) -> None:
    worker, _, _ = gateway_worker(prefix)
    async with worker_task(worker, running_operator):
        done = await (await saga_client.start("done", [step(prefix, "order")])).wait(WAIT_S)
    assert done.phase is SagaPhase.COMPLETED
    with pytest.raises(SagaNotRedrivable, match="Completed: every step succeeded"):
        await saga_client.redrive("done")
    assert (await saga_client.get("done")).spec.redrive == 0, "the refusal changed the spec"
    # kubectl patch does not ask the client: the operator refuses, with a Warning Event.
    objects: Any = k8s.CustomObjectsApi(api_client)  # _content_type: not in the stubs
    await objects.patch_namespaced_custom_object(
        API_GROUP,
        API_VERSION,
        namespace,
        PLURAL,
        "done",
        {"spec": {"redrive": 1}},
        _content_type="application/merge-patch+json",
    )
    event = await event_seen(api_client, namespace, "done", "RedriveRefused")
    after = await saga_client.wait("done", WAIT_S)
    assert event.type == "Warning" and "every step succeeded" in event.message
    assert after.phase is SagaPhase.COMPLETED and after.status is not None
    assert after.status.observed_redrive == 1
    assert after.status.finished_at == (done.status.finished_at if done.status else None)


async def test_operator_killed_during_a_redrive_finishes_it_from_status(
    operator_settings: Settings,
    saga_crd: object,
    saga_client: AsyncSagaClient,
    prefix: str,
) -> None:
    worker, ledger, gateway = gateway_worker(prefix)
    first, second = OperatorProcess(operator_settings), OperatorProcess(operator_settings)
    try:
        await first.start()
        async with worker_task(worker, operator_settings):
            handle = await saga_client.start("crash-redrive", refund_saga(prefix))
            assert (await handle.wait(WAIT_S)).phase is SagaPhase.FAILED
            gateway.down, gateway.hold = False, True
            await handle.redrive()
            async with asyncio.timeout(WAIT_S):
                await gateway.entered.wait()
            await first.kill()
            gateway.release.set()  # the refund's result waits for the next operator
            await second.start()
            saga = await handle.wait(WAIT_S)
    finally:
        await first.stop()
        await second.stop()
    assert saga.phase is SagaPhase.COMPENSATED, saga.status
    # A command may be re-published to its handler (same dispatch id) by the next operator.
    assert list(dict.fromkeys(ledger.steps("undo", "crash-redrive"))) == ["payment", "order"]
    assert len(set(ledger.dispatch_ids("crash-redrive", "payment", kind="undo"))) == 2
    assert len(set(ledger.dispatch_ids("crash-redrive", "order", kind="undo"))) == 1
