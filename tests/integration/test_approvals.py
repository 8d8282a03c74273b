"""Approval steps on the real platform: approve, reject, time out, and an operator killed while
a step waits. Answers go through both clients and the CLI; the CRD's rules are the real ones."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from kubesaga import (
    ApprovalRefused,
    AsyncSagaClient,
    SagaClient,
    SagaInvalid,
    SagaPhase,
    SagaTimeout,
    StepPhase,
)
from kubesaga.models import API_GROUP, API_VERSION, PLURAL, ApprovalOutcome, SagaSpec
from kubesaga.settings import Settings
from kubesaga.store.watching import watch_until
from tests.integration.harness import OperatorProcess, operator_env, worker_task
from tests.integration.scripted import scripted_worker, step

pytestmark = pytest.mark.usefixtures("saga_crd")

WAIT_S = 60
USER = "kubesaga-testenv-admin"
"""Who the platform's kubeconfig authenticates as (its client certificate's CN)."""


def gate(name: str, timeout: float | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": name, "approval": {} if timeout is None else {"timeoutSeconds": timeout}, **kw}


async def until_waiting(client: AsyncSagaClient, name: str, step_name: str) -> None:
    """Watch (not poll) until ``step_name`` waits for approval."""
    async with contextlib.aclosing(client.watch(name, WAIT_S)) as snapshots:
        async for saga in snapshots:
            if saga.status and saga.status.step(step_name).phase is StepPhase.AWAITING_APPROVAL:
                return
    raise AssertionError(f"{name}: step {step_name} never waited for approval")


async def events_of(
    saga_client: AsyncSagaClient, namespace: str, name: str, reasons: set[str]
) -> dict[str, tuple[str, str]]:
    """Watch the saga's Events until one of each reason arrived: reason -> (type, message).

    The operator posts them behind the transitions, so this runs while it still runs."""
    seen: dict[str, tuple[str, str]] = {}

    def all_seen(kind: str, obj: Any) -> bool | None:
        if kind != "DELETED":
            seen.setdefault(obj.reason, (obj.type, obj.message))
        return True if reasons <= seen.keys() else None

    async with asyncio.timeout(WAIT_S):
        await watch_until(
            k8s.CoreV1Api(saga_client.api).list_namespaced_event,
            namespace,
            check=all_seen,
            field_selector=f"involvedObject.name={name}",
        )
    return seen


async def test_approve_completes_the_saga_and_records_who_and_why(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str, namespace: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "buy-1", [step(prefix, "reserve"), gate("manager"), step(prefix, "ship")]
        )
        await until_waiting(saga_client, "buy-1", "manager")
        assert ledger.steps("do", "buy-1", event="start") == ["reserve"]
        await saga_client.approve("buy-1", "manager", "under budget")
        saga = await saga_client.wait("buy-1", WAIT_S)
        events = await events_of(saga_client, namespace, "buy-1", {"ApprovalRequested", "Approved"})
    assert events["Approved"] == ("Normal", f"step manager approved by {USER}: under budget")
    assert saga.phase is SagaPhase.COMPLETED
    assert saga.status is not None
    manager = saga.status.step("manager")
    assert manager.approval is not None
    assert manager.approval.outcome is ApprovalOutcome.APPROVED
    assert (manager.approval.by, manager.approval.reason) == (USER, "under budget")
    assert manager.output == {"approved": True, "by": USER, "reason": "under budget"}
    assert sorted(saga.status.step("ship").output["seen"]) == ["manager", "reserve"]  # type: ignore[index]
    with pytest.raises(ApprovalRefused, match="already ended Completed"):
        await saga_client.reject("buy-1", "manager", "too late")
    # Past the client (kubectl, another tool), the CRD refuses a second answer on its own.
    objects: Any = k8s.CustomObjectsApi(saga_client.api)  # _content_type: not in the stubs
    patch = [
        {
            "op": "replace",
            "path": "/spec/approvals/0",
            "value": {"step": "manager", "approved": False, "by": "mallory"},
        }
    ]
    with pytest.raises(k8s.ApiException) as refused:
        await objects.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, "buy-1", patch,
            _content_type="application/json-patch+json",
        )  # fmt: skip
    assert "cannot be changed or removed" in str(refused.value.body)


async def test_reject_compensates_the_earlier_steps_in_reverse_order(
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    prefix: str,
    kubeconfig: str,
    namespace: str,
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start(
            "buy-2",
            [
                step(prefix, "reserve"),
                step(prefix, "charge"),
                gate("manager"),
                step(prefix, "ship"),
            ],
        )
        with pytest.raises(ApprovalRefused, match="not an approval step"):
            await saga_client.approve("buy-2", "ship")
        await until_waiting(saga_client, "buy-2", "manager")
        blocking = await asyncio.to_thread(SagaClient.connect, kubeconfig, namespace)
        try:
            await asyncio.to_thread(blocking.reject, "buy-2", "manager", "too expensive")
            with pytest.raises(ApprovalRefused, match=f"already rejected by {USER}"):
                await asyncio.to_thread(blocking.approve, "buy-2", "manager")
        finally:
            blocking.close()
        saga = await saga_client.wait("buy-2", WAIT_S)
        events = await events_of(saga_client, namespace, "buy-2", {"Rejected"})
    assert events["Rejected"] == ("Warning", f"step manager rejected by {USER}: too expensive")
    assert saga.phase is SagaPhase.COMPENSATED
    assert ledger.steps("undo", "buy-2") == ["charge", "reserve"]
    assert ledger.steps("do", "buy-2", event="start") == ["reserve", "charge"]
    assert saga.status is not None
    manager = saga.status.step("manager")
    assert manager.phase is StepPhase.FAILED
    assert manager.error is not None and manager.error.type == "ApprovalRejected"
    assert manager.error.message == f"rejected by {USER}: too expensive"


async def test_no_answer_in_time_compensates(
    running_operator: Settings, saga_client: AsyncSagaClient, prefix: str, namespace: str
) -> None:
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        await saga_client.start("buy-3", [step(prefix, "reserve"), gate("manager", timeout=1)])
        saga = await saga_client.wait("buy-3", WAIT_S)
        events = await events_of(saga_client, namespace, "buy-3", {"ApprovalTimedOut"})
    assert events["ApprovalTimedOut"] == ("Warning", "step manager got no answer within 1s")
    assert saga.phase is SagaPhase.COMPENSATED
    assert ledger.steps("undo", "buy-3") == ["reserve"]
    assert saga.status is not None
    manager = saga.status.step("manager")
    assert manager.error is not None and manager.error.type == "ApprovalTimedOut"
    assert manager.approval is not None and manager.approval.outcome is ApprovalOutcome.TIMED_OUT
    with pytest.raises(ApprovalRefused, match="already ended Compensated"):
        await saga_client.approve("buy-3", "manager")


async def test_a_new_saga_cannot_carry_answers(saga_client: AsyncSagaClient) -> None:
    """The CRD refuses an answer no step waits for: here, on create."""
    spec = {
        "steps": [gate("manager")],
        "approvals": [{"step": "manager", "approved": True, "by": "me"}],
    }
    with pytest.raises(SagaInvalid, match="cannot carry approval answers"):
        await saga_client.create("buy-4", SagaSpec.model_validate(spec))


async def test_operator_killed_while_a_step_waits_then_approved_completes(
    operator_settings: Settings, saga_client: AsyncSagaClient, prefix: str, namespace: str
) -> None:
    """SIGKILL while waiting, the answer given (with the CLI) while no operator runs: a new
    operator finds the answer in spec and the open approval in status, and finishes."""
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, operator_settings):
        operator = OperatorProcess(operator_settings)
        await operator.start()
        try:
            await saga_client.start(
                "buy-5",
                [step(prefix, "reserve"), gate("manager", timeout=600), step(prefix, "ship")],
            )
            await until_waiting(saga_client, "buy-5", "manager")
            await operator.kill()
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kubesaga", "approve", "buy-5", "manager",
                "--reason", "ok by phone", "-n", namespace,
                env=operator_env(operator_settings),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await cli.communicate()
            assert cli.returncode == 0, err.decode()
            assert out.decode().strip() == (
                f"saga.kubesaga.io/buy-5 step manager approved by {USER}"
            )
            operator = OperatorProcess(operator_settings)
            await operator.start()
            try:
                saga = await saga_client.wait("buy-5", WAIT_S)
            except SagaTimeout as timeout:  # say where it stopped, and what the operator did
                log = "\n".join(operator.log[-30:])
                raise AssertionError(f"{timeout.last}\n{log}") from timeout
        finally:
            await operator.stop()
    assert saga.phase is SagaPhase.COMPLETED
    assert ledger.steps("do", "buy-5") == ["reserve", "ship"]
    assert saga.status is not None
    approval = saga.status.step("manager").approval
    assert approval is not None and (approval.by, approval.reason) == (USER, "ok by phone")
