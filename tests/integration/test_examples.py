"""Every example in examples/ run on the platform: its saga.yaml, its handlers, the operator
(``run_example``: tests/integration/examples_kit.py)."""

from __future__ import annotations

import contextlib

from kubesaga import AsyncSagaClient, SagaPhase, StepPhase
from kubesaga.settings import Settings
from tests.integration.examples_kit import (
    EXAMPLES,
    WAIT_S,
    ExampleRun,
    load_handlers,
    load_manifest,
)
from tests.integration.harness import worker_task


def test_every_example_has_a_saga_handlers_and_a_readme() -> None:
    examples = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert examples == [
        "01-order-saga",
        "02-compensation",
        "03-parallel",
        "04-retry-timeout",
        "05-approval",
        "06-suspend-redrive",
    ]
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


async def test_05_unanswered_approval_times_out_and_the_refund_is_cancelled(
    run_example: ExampleRun,
) -> None:
    saga, handlers = await run_example("05-approval")
    assert saga.phase is SagaPhase.COMPENSATED, saga.status
    assert saga.status is not None
    manager = saga.status.step("manager")
    assert manager.error is not None and manager.error.type == "ApprovalTimedOut"
    assert saga.status.step("pay_refund").phase is StepPhase.SKIPPED
    assert handlers.refunds.open == {} and len(handlers.refunds.cancelled) == 1
    assert handlers.refunds.paid == {}


async def test_05_approved_refund_is_paid_with_the_approver_on_record(
    running_operator: Settings, saga_client: AsyncSagaClient
) -> None:
    handlers = load_handlers("05-approval")
    name, spec, _ = load_manifest("05-approval")
    async with worker_task(handlers.worker, running_operator):
        await saga_client.create(name, spec)
        async with contextlib.aclosing(saga_client.watch(name, WAIT_S)) as snapshots:
            async for seen in snapshots:
                if seen.status and seen.status.step("manager").phase is StepPhase.AWAITING_APPROVAL:
                    break
        await saga_client.approve(name, "manager", "customer called", by="manager-anna")
        saga = await saga_client.wait(name, WAIT_S)
    assert saga.phase is SagaPhase.COMPLETED, saga.status
    [payout] = handlers.refunds.paid.values()
    assert payout == {"amount": 250, "approved_by": "manager-anna", "why": "customer called"}


async def test_06_suspended_saga_waits_then_fails_and_a_redrive_after_the_fix_compensates(
    run_example: ExampleRun,
) -> None:
    """Created suspended: nothing runs until resumed. Then the carrier refuses, the refund
    gateway is down and the saga ends Failed, the order left behind the refund; once the
    gateway is up, a redrive refunds and then cancels the order."""
    handlers = load_handlers("06-suspend-redrive")
    name, spec, expected = load_manifest("06-suspend-redrive")
    sagas = run_example.client
    async with worker_task(handlers.worker, run_example.settings):
        handle = await sagas.create(name, spec.model_copy(update={"suspend": True}))
        async for seen in sagas.watch(name, WAIT_S):
            if seen.phase is SagaPhase.SUSPENDED:
                break
        assert seen.status is not None and seen.status.step("create_order").attempt == 0
        await handle.resume()
        failed = await handle.wait(WAIT_S)
        assert failed.phase is expected is SagaPhase.FAILED, failed.status
        assert failed.status is not None and failed.status.reason == "CompensationFailed"
        assert failed.status.step("create_order").phase is StepPhase.SUCCEEDED
        assert list(handlers.shop.payments.values()) == ["charged"], "not refunded yet"
        handlers.gateway.up = True  # the human fix
        await handle.redrive()
        saga = await handle.wait(WAIT_S)
    assert saga.phase is SagaPhase.COMPENSATED, saga.status
    assert [what.split()[0] for _, what in handlers.shop.journal[-2:]] == ["refunded", "order"]
    assert set(handlers.shop.payments.values()) == {"refunded"}
    assert set(handlers.shop.orders.values()) == {"cancelled"}
    assert saga.status is not None
    refund = saga.status.step("charge_payment")
    assert [h.attempt for h in refund.compensation_history or []] == [2]
