"""Example 02: a declined payment rolls the order back.

Run the handlers with ``kubesaga worker handlers:worker --app-dir examples/02-compensation``.

``payment.charge`` raises ``PermanentError(type="PaymentDeclined")`` when the order total is over
the card's limit (``card_limit`` in the step's input). Retrying cannot help, so the operator
compensates the steps that succeeded, newest first: ``inventory.release`` and then
``orders.delete``. Each compensation gets its own step's output (``ctx.step_output``) to know
what to undo, and is idempotent: undoing something already undone changes nothing.

The actions are prefixed ``ex02.`` because queues are per action: the demo runs every example's
worker at once, and example 01's working ``payment.charge`` must not take these commands.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from kubesaga import PermanentError, StepContext, Worker

log = logging.getLogger("examples.compensation")

worker = Worker("compensation")

CENT = Decimal("0.01")


@dataclass
class Shop:
    """The in-memory order, inventory and payment services of this worker process."""

    stock: dict[str, int] = field(default_factory=lambda: {"TV-55": 3})
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Outputs by dispatch id: a redelivered command gets the same answer."""
    journal: list[tuple[str, str]] = field(default_factory=list)
    """(saga, what happened), in order."""

    def note(self, ctx: StepContext, what: str) -> None:
        self.journal.append((ctx.saga_name, what))
        log.info("%s: %s", ctx.saga_name, what)


shop = Shop()


def quantity(value: Any, name: str) -> int:
    """A positive whole number from JSON, which may arrive as 1 or 1.0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentError(f"{name} must be a number, got {value!r}", type="InvalidInput")
    if value != int(value) or value < 1:
        raise PermanentError(
            f"{name} must be a whole number >= 1, got {value!r}", type="InvalidInput"
        )
    return int(value)


def money(value: Any, name: str) -> Decimal:
    """An amount from JSON (int or float) as an exact Decimal rounded to cents."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentError(f"{name} must be a number, got {value!r}", type="InvalidInput")
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)


def answer(ctx: StepContext, output: dict[str, Any]) -> dict[str, Any]:
    return shop.answers.setdefault(ctx.dispatch_id, output)


@worker.step("ex02.orders.create")
async def create_order(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    sku = str(ctx.input.get("sku", ""))
    qty = quantity(ctx.input.get("quantity"), "quantity")
    total = money(ctx.input.get("unit_price"), "unit_price") * qty
    order_id = f"ord-{ctx.saga_uid[:8]}"
    shop.orders.setdefault(order_id, {"sku": sku, "quantity": qty, "total": total})
    shop.note(ctx, f"order {order_id} created ({qty} x {sku}, {total} total)")
    return answer(ctx, {"order_id": order_id, "sku": sku, "quantity": qty, "total": float(total)})


@worker.compensation("ex02.orders.delete")
async def delete_order(ctx: StepContext) -> None:
    order_id = str((ctx.step_output or {}).get("order_id"))
    if shop.orders.pop(order_id, None) is not None:
        shop.note(ctx, f"order {order_id} deleted")


@worker.step("ex02.inventory.reserve")
async def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    order = ctx.dependency_outputs["create_order"]
    order_id, sku = str(order["order_id"]), str(order["sku"])
    qty = quantity(order["quantity"], "quantity")
    if order_id not in shop.reservations:
        if shop.stock.get(sku, 0) < qty:
            raise PermanentError(f"{sku} is out of stock", type="OutOfStock")
        shop.stock[sku] -= qty
        shop.reservations[order_id] = {"sku": sku, "quantity": qty}
        shop.note(ctx, f"reserved {qty} x {sku} for {order_id} ({shop.stock[sku]} left)")
    return answer(ctx, {"reservation_id": f"res-{order_id}", "order_id": order_id})


@worker.compensation("ex02.inventory.release")
async def release_inventory(ctx: StepContext) -> None:
    order_id = str((ctx.step_output or {}).get("order_id"))
    reservation = shop.reservations.pop(order_id, None)
    if reservation is not None:
        shop.stock[reservation["sku"]] += reservation["quantity"]
        shop.note(ctx, f"released {reservation['quantity']} x {reservation['sku']} of {order_id}")


@worker.step("ex02.payment.charge")
async def charge_payment(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    order = ctx.dependency_outputs["create_order"]
    order_id = str(order["order_id"])
    amount = money(order["total"], "total")
    limit = money(ctx.input.get("card_limit", 1000), "card_limit")
    currency = str(ctx.context.get("currency", "EUR"))
    if amount > limit:
        shop.note(ctx, f"card declined for {order_id}: {amount} {currency} over limit {limit}")
        raise PermanentError(
            f"card declined: {amount} {currency} is over the card's limit of {limit} {currency}",
            type="PaymentDeclined",
        )
    shop.payments.setdefault(order_id, {"amount": amount, "currency": currency})
    shop.note(ctx, f"charged {amount} {currency} for {order_id}")
    return answer(ctx, {"payment_id": f"pay-{order_id}", "order_id": order_id})


@worker.compensation("ex02.payment.refund")
async def refund_payment(ctx: StepContext) -> None:
    order_id = str((ctx.step_output or {}).get("order_id"))
    payment = shop.payments.pop(order_id, None)
    if payment is not None:
        shop.note(ctx, f"refunded {payment['amount']} {payment['currency']} for {order_id}")
