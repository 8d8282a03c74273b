"""The generated Saga CRD against a real kube-apiserver: what it accepts, defaults and rejects."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.models import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    ErrorInfo,
    SagaPhase,
    SagaStatus,
    StepPhase,
    StepStatus,
    limits,
    parse_spec,
    parse_status,
)

pytestmark = pytest.mark.usefixtures("saga_crd")

Body = dict[str, Any]


def saga(name: str, steps: list[Body], **spec: Any) -> Body:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"steps": steps, **spec},
    }


def step(name: str, action: str = "orders.create", **extra: Any) -> Body:
    return {"name": name, "action": action, **extra}


SEED_STEPS = [
    step("create_order", "orders.create", compensation="orders.delete"),
    step("reserve_inventory", "inventory.reserve", compensation="inventory.release"),
    step("charge_payment", "payment.charge", compensation="payment.refund"),
]


@pytest.fixture
def sagas(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


async def create(api: client.CustomObjectsApi, namespace: str, body: Body) -> Body:
    created: Body = await api.create_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, body
    )
    return created


async def replace(api: client.CustomObjectsApi, namespace: str, body: Body) -> Body:
    replaced: Body = await api.replace_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, body["metadata"]["name"], body
    )
    return replaced


def causes(exc: ApiException) -> list[tuple[str, str]]:
    """(field, message) of every cause the apiserver gave for a 422."""
    assert exc.status == 422, exc.body
    assert exc.body is not None
    status = json.loads(exc.body)
    return [(c.get("field", ""), c["message"]) for c in status["details"]["causes"]]


async def rejected(
    api: client.CustomObjectsApi, namespace: str, body: Body, *, update: bool = False
) -> list[tuple[str, str]]:
    with pytest.raises(ApiException) as info:
        await (replace if update else create)(api, namespace, body)
    return causes(info.value)


def assert_cause(found: list[tuple[str, str]], field: str, message: str) -> None:
    assert any(f == field and message in m for f, m in found), (
        f"expected {field}: ...{message}... among {found}"
    )


# ------------------------------------------------------------------------------------ accepted


async def test_a_sequential_saga_is_accepted_and_defaulted_by_the_server(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    created = await create(
        sagas, namespace, saga("order", [step("first"), step("second", "orders.confirm")])
    )
    spec = created["spec"]
    first = spec["steps"][0]
    assert first["retry"] == {
        "maxAttempts": 3,
        "backoffSeconds": 1,
        "backoffFactor": 2,
        "maxBackoffSeconds": 60,
    }
    assert first["input"] == {}
    assert first["compensateOnFailure"] is False
    assert "dependsOn" not in first, "absent dependsOn (= the previous step) must stay absent"
    assert "compensationRetry" not in first
    assert spec["context"] == {}
    assert spec["compensate"] is False


async def test_server_defaults_agree_with_the_model(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    written = saga("order", SEED_STEPS, context={"orderId": "o-1"})
    created = await create(sagas, namespace, written)
    assert parse_spec(created["spec"]) == parse_spec(written["spec"])
    assert created["spec"] == parse_spec(written["spec"]).to_wire()


async def test_a_seed_like_saga_is_accepted(sagas: client.CustomObjectsApi, namespace: str) -> None:
    body = saga("order-processing", SEED_STEPS, context={"orderId": "o-1", "amount": 99.5})
    created = await create(sagas, namespace, body)
    assert [s["name"] for s in created["spec"]["steps"]] == [
        "create_order",
        "reserve_inventory",
        "charge_payment",
    ]
    assert created["spec"]["context"] == {"orderId": "o-1", "amount": 99.5}


async def test_a_dag_is_accepted(sagas: client.CustomObjectsApi, namespace: str) -> None:
    steps = [
        step("order", dependsOn=[]),
        step("stock", "inventory.reserve", dependsOn=["order"]),
        step("ship-quote", "shipping.quote", dependsOn=["order"]),
        step("charge", "payment.charge", dependsOn=["stock", "ship-quote"], timeoutSeconds=30),
        step("audit", "audit.log", dependsOn=[]),
    ]
    created = await create(sagas, namespace, saga("dag", steps))
    assert [s["dependsOn"] for s in created["spec"]["steps"]] == [
        [],
        ["order"],
        ["order"],
        ["stock", "ship-quote"],
        [],
    ]


async def test_a_saga_without_steps_is_accepted(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    created = await create(sagas, namespace, saga("empty", []))
    assert created["spec"]["steps"] == []
    body = saga("no-steps-field", [])
    del body["spec"]["steps"]
    created = await create(sagas, namespace, body)
    assert created["spec"]["steps"] == []


async def test_the_largest_allowed_saga_is_accepted(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    names = [f"s{i:02d}-" + "x" * (limits.MAX_NAME_LENGTH - 4) for i in range(limits.MAX_STEPS)]
    steps = [step(name, dependsOn=names[:i]) for i, name in enumerate(names)]
    await create(sagas, namespace, saga("big", steps))


async def test_compensation_can_be_requested_after_creation(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    created = await create(sagas, namespace, saga("undo-me", SEED_STEPS))
    created["spec"]["compensate"] = True
    replaced = await replace(sagas, namespace, created)
    assert replaced["spec"]["compensate"] is True
    assert replaced["metadata"]["generation"] == 2


# ------------------------------------------------------------------------------------ rejected


async def test_duplicate_step_names_are_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    steps = [*SEED_STEPS, step("create_order", "orders.create")]
    found = await rejected(sagas, namespace, saga("dup", steps))
    assert_cause(
        found, "spec.steps", 'step names must be unique: "create_order" is used by more than one'
    )


async def test_depends_on_an_unknown_step_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    steps = [step("a"), step("b", dependsOn=["a", "nope"])]
    found = await rejected(sagas, namespace, saga("unknown-dep", steps))
    assert_cause(
        found, "spec.steps", 'step "b" depends on "nope", which is not a step of this saga'
    )


async def test_a_step_depending_on_itself_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    steps = [step("a"), step("b", dependsOn=["a", "b"])]
    found = await rejected(sagas, namespace, saga("self-dep", steps))
    assert_cause(found, "spec.steps[1].dependsOn", 'step "b" cannot depend on itself')


async def test_a_repeated_dependency_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    steps = [step("a"), step("b", dependsOn=["a", "a"])]
    found = await rejected(sagas, namespace, saga("twice-dep", steps))
    assert_cause(found, "spec.steps[1].dependsOn[1]", 'Duplicate value: "a"')


async def test_an_empty_action_is_rejected(sagas: client.CustomObjectsApi, namespace: str) -> None:
    found = await rejected(sagas, namespace, saga("no-action", [step("a", "")]))
    assert_cause(found, "spec.steps[0].action", "should be at least 1 chars long")


async def test_a_missing_action_is_rejected(sagas: client.CustomObjectsApi, namespace: str) -> None:
    found = await rejected(sagas, namespace, saga("no-action", [{"name": "a"}]))
    assert_cause(found, "spec.steps[0]", 'step "a" must have exactly one of action or approval')


async def test_a_step_with_both_action_and_approval_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    both = {"name": "a", "action": "x.a", "approval": {}}
    found = await rejected(sagas, namespace, saga("both", [both]))
    assert_cause(found, "spec.steps[0]", 'step "a" must have exactly one of action or approval')


async def test_an_approval_step_with_a_compensation_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    gate = {"name": "ok", "approval": {"timeoutSeconds": 60}, "compensation": "x.undo"}
    found = await rejected(sagas, namespace, saga("gate-undo", [gate]))
    assert_cause(found, "spec.steps[0]", 'approval step "ok" cannot have compensation')


async def test_an_answer_to_a_step_that_is_no_approval_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    body = saga("answer-action", [step("a")])
    body["spec"]["approvals"] = [{"step": "a", "approved": True, "by": "me"}]
    found = await rejected(sagas, namespace, body)
    assert_cause(found, "spec.approvals", "may only answer approval steps of this saga")


@pytest.mark.parametrize(
    "name",
    ["CreateOrder", "-create", "create-", "create order", "x" * (limits.MAX_NAME_LENGTH + 1)],
    ids=["uppercase", "leading-dash", "trailing-dash", "space", "too-long"],
)
async def test_bad_step_names_are_rejected(
    sagas: client.CustomObjectsApi, namespace: str, name: str
) -> None:
    found = await rejected(sagas, namespace, saga("bad-name", [step(name)]))
    if len(name) > limits.MAX_NAME_LENGTH:
        assert_cause(found, "spec.steps[0].name", "may not be more than 63 bytes")
    else:
        assert_cause(found, "spec.steps[0].name", "should match '^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$'")


async def test_too_many_steps_are_rejected(sagas: client.CustomObjectsApi, namespace: str) -> None:
    steps = [step(f"s{i}") for i in range(limits.MAX_STEPS + 1)]
    found = await rejected(sagas, namespace, saga("too-many", steps))
    assert_cause(found, "spec.steps", f"must have at most {limits.MAX_STEPS} items")


async def test_an_out_of_range_retry_policy_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    steps = [step("a", retry={"maxAttempts": 0}, timeoutSeconds=0)]
    found = await rejected(sagas, namespace, saga("bad-retry", steps))
    assert_cause(found, "spec.steps[0].retry.maxAttempts", "should be greater than or equal to 1")
    assert_cause(found, "spec.steps[0].timeoutSeconds", "should be greater than 0")


async def test_changing_steps_after_creation_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    created = await create(sagas, namespace, saga("frozen", SEED_STEPS))
    created["spec"]["steps"][1]["action"] = "inventory.hold"
    found = await rejected(sagas, namespace, created, update=True)
    assert_cause(
        found, "spec.steps", "spec.steps is immutable once the saga exists; create a new Saga"
    )


async def test_adding_a_step_after_creation_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    created = await create(sagas, namespace, saga("frozen", SEED_STEPS))
    created["spec"]["steps"].append(step("ship", "shipping.send"))
    found = await rejected(sagas, namespace, created, update=True)
    assert_cause(found, "spec.steps", "spec.steps is immutable")


@pytest.mark.parametrize("how", ["set-false", "remove"])
async def test_unsetting_compensate_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str, how: str
) -> None:
    created = await create(sagas, namespace, saga("undo", SEED_STEPS, compensate=True))
    if how == "set-false":
        created["spec"]["compensate"] = False
    else:
        del created["spec"]["compensate"]
    found = await rejected(sagas, namespace, created, update=True)
    assert_cause(found, "spec.compensate", "spec.compensate cannot be unset once requested")


# -------------------------------------------------------------------------------------- status


def full_status() -> SagaStatus:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return SagaStatus(
        phase=SagaPhase.COMPENSATING,
        reason="StepFailed",
        message="charge_payment failed: card declined",
        progress="2/3",
        current_step="reserve_inventory",
        observed_generation=1,
        started_at=at,
        steps=[
            StepStatus(
                name="create_order",
                phase=StepPhase.SUCCEEDED,
                attempt=1,
                dispatch_id="uid.create_order.execute.1.abc",
                started_at=at,
                finished_at=at,
                output={"orderId": "o-1", "lines": [{"sku": "x", "qty": 2}]},
            ),
            StepStatus(
                name="reserve_inventory",
                phase=StepPhase.COMPENSATING,
                attempt=2,
                output={"reservation": "r-9"},
                compensation={"attempt": 1, "dispatchId": "uid.reserve.compensate.1.x"},
            ),
            StepStatus(
                name="charge_payment",
                phase=StepPhase.FAILED,
                attempt=1,
                error=ErrorInfo(message="card declined", type="PaymentDeclined"),
            ),
        ],
        conditions=[
            {
                "type": "Finished",
                "status": "False",
                "reason": "Compensating",
                "lastTransitionTime": at,
            }
        ],
    )


async def test_the_status_subresource_keeps_everything_the_operator_writes(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    created = await create(sagas, namespace, saga("status", SEED_STEPS))
    status = full_status()
    created["status"] = status.to_wire()
    written = await sagas.replace_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, PLURAL, "status", created
    )
    assert written["status"] == status.to_wire()
    assert parse_status(written["status"]) == status
    assert written["metadata"]["generation"] == created["metadata"]["generation"]


async def test_sagas_can_be_selected_by_phase(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    for name, phase in [("running", SagaPhase.RUNNING), ("done", SagaPhase.COMPLETED)]:
        created = await create(sagas, namespace, saga(name, SEED_STEPS))
        created["status"] = SagaStatus(phase=phase).to_wire()
        await sagas.replace_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, PLURAL, name, created
        )
    listed = await sagas.list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, field_selector="status.phase=Running"
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == ["running"]


# ------------------------------------------------------------------------------------- kubectl


async def kubectl(kubeconfig: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        *args,
        env={**os.environ, "KUBECONFIG": kubeconfig},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_manifest(path: Path, body: Body) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


async def test_kubectl_apply_of_duplicate_step_names_fails_with_a_clear_message(
    kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    steps = [*SEED_STEPS, step("create_order", "orders.create")]
    manifest = write_manifest(tmp_path / "saga.yaml", saga("dup", steps))
    code, _, err = await kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    assert code != 0
    assert 'The Saga "dup" is invalid' in err, err
    assert 'step names must be unique: "create_order" is used by more than one step' in err, err


async def test_kubectl_apply_rejects_a_misspelt_field(
    kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    body = saga("typo", [step("a"), step("b", dependOn=["a"])])
    manifest = write_manifest(tmp_path / "saga.yaml", body)
    code, _, err = await kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    assert code != 0
    assert 'unknown field "spec.steps[1].dependOn"' in err, err


async def test_kubectl_get_sagas_shows_the_printer_columns(
    kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "saga.yaml", saga("order", SEED_STEPS))
    code, _, err = await kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    assert code == 0, err
    code, out, err = await kubectl(kubeconfig, "get", "sg", "-n", namespace, "-o", "wide")
    assert code == 0, err
    header = out.split("\n")[0].split()
    assert header == ["NAME", "PHASE", "PROGRESS", "CURRENT", "REASON", "RESUMES-TO", "AGE"]
    code, out, err = await kubectl(kubeconfig, "get", "sagas", "-n", namespace)
    assert code == 0, err
    assert "REASON" not in out.split("\n")[0]


async def test_lowering_redrive_is_rejected_with_how_to_redrive(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    created = await create(sagas, namespace, saga("redriven", SEED_STEPS, redrive=2))
    created["spec"]["redrive"] = 1
    found = await rejected(sagas, namespace, created, update=True)
    assert_cause(found, "spec.redrive", "spec.redrive may only increase: bump it by one")


async def test_redrive_past_its_limit_is_rejected(
    sagas: client.CustomObjectsApi, namespace: str
) -> None:
    found = await rejected(sagas, namespace, saga("too-many", SEED_STEPS, redrive=6))
    assert_cause(found, "spec.redrive", "less than or equal to 5")
