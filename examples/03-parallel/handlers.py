"""Example 03: parallel branches of a DAG.

Run the handlers with ``kubesaga worker handlers:worker --app-dir examples/03-parallel``.

``reserve_inventory``, ``check_fraud`` and ``quote_shipping`` all depend only on
``create_order``, so the operator dispatches them together and this worker (concurrency 16 by
default) runs them at the same time: the saga takes about as long as its slowest branch, not
the sum of them. Each handler waits ``latency_seconds`` (from its input) to stand in for a call to
a remote service, and records when it ran in ``shop.journal``.

Handlers read only the outputs of the steps they depend on (``ctx.dependency_outputs``), which
are the ancestors in the DAG: ``book_shipment`` sees the order, the payment and the quote.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from kubesaga import PermanentError, StepContext, Worker

log = logging.getLogger("examples.parallel")

worker = Worker("parallel")

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Call:
    """One handler run: which saga and step, and when it began and ended (monotonic seconds)."""

    saga: str
    step: str
    began: float
    ended: float


@dataclass
class Shop:
    """The in-memory services of this worker process."""

    stock: dict[str, int] = field(default_factory=lambda: {"BIKE-7": 10})
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, Decimal] = field(default_factory=dict)
    shipments: dict[str, str] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Outputs by dispatch id: a redelivered command gets the same answer."""
    journal: list[Call] = field(default_factory=list)


shop = Shop()


def number(value: Any, name: str) -> float:
    """A finite JSON number (int or float; never bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentError(f"{name} must be a number, got {value!r}", type="InvalidInput")
    return float(value)


def money(value: Any, name: str) -> Decimal:
    return Decimal(str(number(value, name))).quantize(CENT, rounding=ROUND_HALF_EVEN)


async def remote_call(ctx: StepContext) -> None:
    """Stand-in for the network: wait ``latency_seconds`` of the step's input."""
    await asyncio.sleep(number(ctx.input.get("latency_seconds", 0), "latency_seconds"))


def once(ctx: StepContext, began: float, output: dict[str, Any]) -> dict[str, Any]:
    """Remember the answer for this dispatch id and journal the call."""
    shop.journal.append(Call(ctx.saga_name, ctx.step_name, began, time.monotonic()))
    log.info("%s: %s done: %s", ctx.saga_name, ctx.step_name, output)
    return shop.answers.setdefault(ctx.dispatch_id, output)


@worker.step("ex03.orders.create")
async def create_order(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    began = time.monotonic()
    qty = number(ctx.input.get("quantity"), "quantity")
    if qty != int(qty) or qty < 1:
        raise PermanentError(
            f"quantity must be a whole number >= 1, got {qty}", type="InvalidInput"
        )
    total = money(ctx.input.get("unit_price"), "unit_price") * int(qty)
    order_id = f"ord-{ctx.saga_uid[:8]}"
    order = {
        "order_id": order_id,
        "sku": str(ctx.input.get("sku")),
        "quantity": int(qty),
        "total": float(total),
        "weight_kg": number(ctx.input.get("weight_kg", 1), "weight_kg") * int(qty),
    }
    shop.orders.setdefault(order_id, order)
    return once(ctx, began, order)


@worker.compensation("ex03.orders.delete")
async def delete_order(ctx: StepContext) -> None:
    shop.orders.pop(str((ctx.step_output or {}).get("order_id")), None)


@worker.step("ex03.inventory.reserve")
async def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    began = time.monotonic()
    await remote_call(ctx)
    order = ctx.dependency_outputs["create_order"]
    order_id, sku, qty = str(order["order_id"]), str(order["sku"]), int(order["quantity"])
    if order_id not in shop.reservations:
        if shop.stock.get(sku, 0) < qty:
            raise PermanentError(f"{sku} is out of stock", type="OutOfStock")
        shop.stock[sku] -= qty
        shop.reservations[order_id] = {"sku": sku, "quantity": qty}
    return once(ctx, began, {"order_id": order_id, "warehouse": ctx.input.get("warehouse")})


@worker.compensation("ex03.inventory.release")
async def release_inventory(ctx: StepContext) -> None:
    reservation = shop.reservations.pop(str((ctx.step_output or {}).get("order_id")), None)
    if reservation is not None:
        shop.stock[reservation["sku"]] += reservation["quantity"]


@worker.step("ex03.fraud.check")
async def check_fraud(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    began = time.monotonic()
    await remote_call(ctx)
    order = ctx.dependency_outputs["create_order"]
    # A deterministic "model": the score depends only on the customer and the amount.
    digest = hashlib.sha256(f"{ctx.context.get('customer')}:{order['total']}".encode()).digest()
    score = round(digest[0] / 255 * 0.5, 3)  # 0 .. 0.5: this shop's customers are honest
    if score > number(ctx.input.get("max_score", 0.8), "max_score"):
        raise PermanentError(f"fraud score {score} is too high", type="FraudSuspected")
    return once(ctx, began, {"score": score, "decision": "approve"})


@worker.step("ex03.shipping.quote")
async def quote_shipping(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    began = time.monotonic()
    await remote_call(ctx)
    weight = number(ctx.dependency_outputs["create_order"]["weight_kg"], "weight_kg")
    price = (Decimal("4.95") + Decimal("0.35") * Decimal(str(weight))).quantize(CENT)
    carrier = str(ctx.input.get("carrier", "post"))
    return once(ctx, began, {"carrier": carrier, "price": float(price), "days": 2})


@worker.step("ex03.payment.charge")
async def charge_payment(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    began = time.monotonic()
    order = ctx.dependency_outputs["create_order"]
    order_id = str(order["order_id"])
    amount = shop.payments.setdefault(order_id, money(order["total"], "total"))
    output = {"payment_id": f"pay-{order_id}", "order_id": order_id, "amount": float(amount)}
    return once(ctx, began, output)


@worker.compensation("ex03.payment.refund")
async def refund_payment(ctx: StepContext) -> None:
    shop.payments.pop(str((ctx.step_output or {}).get("order_id")), None)


@worker.step("ex03.shipping.book")
async def book_shipment(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    began = time.monotonic()
    order_id = str(ctx.dependency_outputs["create_order"]["order_id"])
    quote = ctx.dependency_outputs["quote_shipping"]
    tracking = shop.shipments.setdefault(order_id, f"{quote['carrier'].upper()}-{order_id[4:]}")
    paid = ctx.dependency_outputs["charge_payment"]["amount"]
    return once(ctx, began, {"tracking": tracking, "order_id": order_id, "paid": paid})


@worker.compensation("ex03.shipping.cancel")
async def cancel_shipment(ctx: StepContext) -> None:
    shop.shipments.pop(str((ctx.step_output or {}).get("order_id")), None)
