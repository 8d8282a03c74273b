"""Every example in examples/ run on the platform: its saga.yaml, its handlers, the operator.

Each test loads the example's ``handlers.py`` afresh (its in-memory services start empty), runs
its ``worker`` beside an operator scoped to the test's namespace and results queue, creates the
saga from ``saga.yaml`` and waits (by watching) for the final phase.

The examples' action names are fixed, and RabbitMQ declares each action queue with the
dead-letter queue's name as an argument: these tests keep the default dead-letter queue (as the
demo does) so that both can declare the same action queues on one broker.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest_asyncio
import yaml

from kubesaga import AsyncSagaClient, Saga, SagaPhase, StepPhase, Worker
from kubesaga.broker.topology import DEAD_LETTER_QUEUE
from kubesaga.models import SagaPhase as Phase
from kubesaga.models import SagaSpec
from kubesaga.settings import Settings
from tests.integration.harness import operator_task, worker_task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT_S = 60


def load_handlers(example: str) -> ModuleType:
    """Import examples/<example>/handlers.py under a unique module name (fresh state)."""
    path = EXAMPLES / example / "handlers.py"
    name = f"example_{example.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_manifest(example: str) -> tuple[str, SagaSpec, Phase]:
    """Name, spec and expected final phase (the annotation the demo reads too)."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / example / "saga.yaml").read_text())
    assert doc["apiVersion"] == "kubesaga.io/v1alpha1" and doc["kind"] == "Saga"
    expected = doc["metadata"]["annotations"]["examples.kubesaga.io/expected-phase"]
    return doc["metadata"]["name"], SagaSpec.model_validate(doc["spec"]), Phase(expected)


class ExampleRun:
    def __init__(self, client: AsyncSagaClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def __call__(self, example: str) -> tuple[Saga, ModuleType]:
        handlers = load_handlers(example)
        worker = handlers.worker
        assert isinstance(worker, Worker)
        name, spec, expected = load_manifest(example)
        async with worker_task(worker, self.settings):
            await self.client.create(name, spec)
            saga = await self.client.wait(name, WAIT_S)
        assert saga.phase is expected, saga.status
        return saga, handlers


@pytest_asyncio.fixture(loop_scope="session")
async def run_example(
    operator_settings: Settings, saga_crd: dict[str, Any], saga_client: AsyncSagaClient
) -> AsyncIterator[ExampleRun]:
    settings = operator_settings.model_copy(update={"dead_letter_queue": DEAD_LETTER_QUEUE})
    async with operator_task(settings):
        yield ExampleRun(saga_client, settings)


def test_every_example_has_a_saga_handlers_and_a_readme() -> None:
    examples = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert examples == ["01-order-saga", "02-compensation", "03-parallel", "04-retry-timeout"]
    for example in examples:
        for file in ("saga.yaml", "handlers.py", "README.md"):
            assert (EXAMPLES / example / file).is_file(), f"{example}/{file}"


def test_examples_use_distinct_action_names() -> None:
    """Queues are per action and the demo runs every example's worker at once."""
    owners: dict[str, str] = {}
    for example in sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()):
        for action in load_handlers(example).worker.actions:
            assert action not in owners, f"{action} is in {owners.get(action)} and {example}"
            owners[action] = example


async def test_01_order_saga_completes(run_example: ExampleRun) -> None:
    saga, handlers = await run_example("01-order-saga")
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    assert saga.completed_steps() == ["create_order", "reserve_inventory", "charge_payment"]
    assert saga.status is not None
    order = saga.status.step("create_order").output
    assert order is not None and order["total"] == 39.98  # 2 x 19.99, in cents, no float drift
    payment = saga.status.step("charge_payment").output
    assert payment is not None and payment["amount"] == 39.98
    assert handlers.shop.stock["A-1"] == 98


async def test_02_declined_payment_compensates_inventory_then_order(
    run_example: ExampleRun,
) -> None:
    saga, handlers = await run_example("02-compensation")
    assert saga.phase is SagaPhase.COMPENSATED, saga.status
    assert saga.status is not None
    charge = saga.status.step("charge_payment")
    assert charge.phase is StepPhase.FAILED and charge.attempt == 1
    assert charge.error is not None and charge.error.type == "PaymentDeclined"
    assert "card declined" in charge.error.message
    for step in ("reserve_inventory", "create_order"):
        assert saga.status.step(step).phase is StepPhase.COMPENSATED
    undone = [what.split()[0] for _, what in handlers.shop.journal]
    assert undone[-2:] == ["released", "order"]  # inventory first, then the order
    assert handlers.shop.journal[-1][1].endswith("deleted")
    assert handlers.shop.orders == {} and handlers.shop.reservations == {}
    assert handlers.shop.stock["TV-55"] == 3


async def test_03_parallel_branches_overlap(run_example: ExampleRun) -> None:
    saga, handlers = await run_example("03-parallel")
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    calls = {call.step: call for call in handlers.shop.journal}
    branches = [calls["reserve_inventory"], calls["check_fraud"], calls["quote_shipping"]]
    assert max(c.began for c in branches) < min(c.ended for c in branches), "branches overlapped"
    assert calls["charge_payment"].began >= max(
        calls["reserve_inventory"].ended, calls["check_fraud"].ended
    )
    assert calls["book_shipment"].began >= max(
        calls["charge_payment"].ended, calls["quote_shipping"].ended
    )
    assert saga.status is not None
    booking = saga.status.step("book_shipment").output
    assert booking is not None and booking["tracking"].startswith("POSTNL-")


async def test_04_retryable_error_and_timeout_are_retried_to_success(
    run_example: ExampleRun,
) -> None:
    saga, handlers = await run_example("04-retry-timeout")
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    assert saga.status is not None
    assert saga.status.step("create_order").attempt == 1
    assert saga.status.step("reserve_inventory").attempt == 2
    assert saga.status.step("charge_payment").attempt == 2
    outcomes = [(a.step, a.attempt, a.outcome) for a in handlers.shop.journal]
    assert outcomes == [
        ("create_order", 1, "ok"),
        ("reserve_inventory", 1, "unavailable"),
        ("reserve_inventory", 2, "ok"),
        ("charge_payment", 1, "hung"),
        ("charge_payment", 2, "ok"),
    ]
