"""Example 06: suspend a saga while a service is down, redrive it once a human fixed it.

Run the handlers with ``kubesaga worker handlers:worker --app-dir examples/06-suspend-redrive``.

``shipping.ship`` refuses the order permanently, so the saga compensates: first the payment's
refund, then the order's cancellation. The refund gateway is down while ``REFUND_GATEWAY`` is not
``up`` (read on every call; a test flips ``gateway.up``): ``payment.refund`` raises a
``RetryableError``, is retried once and given up, and the saga ends ``Failed``, the order left
uncompensated behind the refund (compensation runs in reverse order). ``kubesaga redrive`` after
the fix runs the refund again and then the cancellation. Every handler is idempotent by its
saga and step, so a redelivered command changes nothing twice.

The actions are prefixed ``ex06.`` because queues are per action and the demo runs every
example's worker at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from kubesaga import PermanentError, RetryableError, StepContext, Worker

log = logging.getLogger("examples.suspend_redrive")

worker = Worker("suspend-redrive")


@dataclass
class RefundGateway:
    """The payment provider's refund API: down until someone fixes it."""

    up: bool = field(default_factory=lambda: os.environ.get("REFUND_GATEWAY", "down") == "up")


@dataclass
class Shop:
    """The in-memory order and payment services of this worker process."""

    orders: dict[str, str] = field(default_factory=dict)
    """Order id -> state (created, cancelled)."""
    payments: dict[str, str] = field(default_factory=dict)
    """Payment id -> state (charged, refunded)."""
    journal: list[tuple[str, str]] = field(default_factory=list)
    """(saga, what happened), in order."""

    def note(self, ctx: StepContext, what: str) -> None:
        self.journal.append((ctx.saga_name, what))
        log.info("%s: %s", ctx.saga_name, what)


gateway = RefundGateway()
shop = Shop()


@worker.step("ex06.orders.create")
def create_order(ctx: StepContext) -> dict[str, Any]:
    order = f"ord-{ctx.saga_uid[:8]}"
    if order not in shop.orders:
        shop.orders[order] = "created"
        shop.note(ctx, f"order {order} created ({ctx.input['sku']})")
    return {"order_id": order, "total": float(ctx.input["unit_price"])}


@worker.compensation("ex06.orders.cancel")
def cancel_order(ctx: StepContext) -> None:
    order = str((ctx.step_output or {})["order_id"])
    if shop.orders.get(order) == "created":
        shop.orders[order] = "cancelled"
        shop.note(ctx, f"order {order} cancelled")


@worker.step("ex06.payment.charge")
def charge_payment(ctx: StepContext) -> dict[str, Any]:
    order = ctx.dependency_outputs["create_order"]
    payment = f"pay-{order['order_id']}"
    if payment not in shop.payments:
        shop.payments[payment] = "charged"
        shop.note(ctx, f"charged {order['total']:.2f} {ctx.context['currency']} as {payment}")
    return {"payment_id": payment, "amount": order["total"]}


@worker.compensation("ex06.payment.refund")
def refund_payment(ctx: StepContext) -> None:
    payment = str((ctx.step_output or {})["payment_id"])
    if not gateway.up:
        shop.note(ctx, f"refund of {payment} failed: gateway down (attempt {ctx.attempt})")
        raise RetryableError("refund gateway unavailable", type="GatewayDown")
    if shop.payments.get(payment) == "charged":
        shop.payments[payment] = "refunded"
        shop.note(ctx, f"refunded {payment}")


@worker.step("ex06.shipping.ship")
def ship_order(ctx: StepContext) -> dict[str, Any]:
    carrier = str(ctx.input["carrier"])
    shop.note(ctx, f"carrier {carrier} refused the shipment")
    raise PermanentError(f"carrier {carrier} takes no parcels", type="CarrierRefused")
