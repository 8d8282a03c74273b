"""Example 01: the seed's order processing. Create the order, reserve the stock, charge the card.

Run the handlers with ``kubesaga worker handlers:worker --app-dir examples/01-order-saga``.

The three "services" keep their data in memory so the example runs anywhere; the handlers are
written the way real ones should be:

- idempotent: a command delivered twice (same ``ctx.dispatch_id``) gets the first answer again,
  and a retried step (new dispatch id) finds the order it already created for this saga;
- careful with JSON numbers: ``2`` and ``2.0`` are the same quantity, money is rounded to cents
  with ``Decimal`` instead of being cast to ``int`` (the seed's handlers panicked on floats);
- bad input is a ``PermanentError`` (retrying cannot fix it), so the saga compensates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from kubesaga import PermanentError, StepContext, Worker

log = logging.getLogger("examples.order_saga")

worker = Worker("order-saga")

CENT = Decimal("0.01")


@dataclass
class Shop:
    """The in-memory order, inventory and payment services of this worker process."""

    stock: dict[str, int] = field(default_factory=lambda: {"A-1": 100, "B-2": 5})
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Outputs by dispatch id: a redelivered command gets the same answer."""
    journal: list[tuple[str, str]] = field(default_factory=list)
    """(saga, what happened), in order: what the README and the tests look at."""

    def note(self, ctx: StepContext, what: str) -> None:
        self.journal.append((ctx.saga_name, what))
        log.info("%s: %s", ctx.saga_name, what)


shop = Shop()


def quantity(value: Any, name: str) -> int:
    """A positive whole number from JSON, which may arrive as 2 or 2.0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"{name} must be a number, got {value!r}", type="InvalidInput")
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise PermanentError(
            f"{name} must be a whole number >= 1, got {value!r}", type="InvalidInput"
        )
    return int(value)


def money(value: Any, name: str) -> Decimal:
    """An amount from JSON (int or float) as an exact Decimal rounded to cents."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentError(f"{name} must be a number, got {value!r}", type="InvalidInput")
    amount = Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)
    if amount < 0:
        raise PermanentError(f"{name} must not be negative, got {value!r}", type="InvalidInput")
    return amount


def answered(ctx: StepContext) -> dict[str, Any] | None:
    return shop.answers.get(ctx.dispatch_id)


def answer(ctx: StepContext, output: dict[str, Any]) -> dict[str, Any]:
    shop.answers[ctx.dispatch_id] = output
    return output


@worker.step("orders.create")
async def create_order(ctx: StepContext) -> dict[str, Any]:
    if (known := answered(ctx)) is not None:
        return known
    sku = str(ctx.input.get("sku", ""))
    qty = quantity(ctx.input.get("quantity"), "quantity")
    unit_price = money(ctx.input.get("unit_price"), "unit_price")
    if sku not in shop.stock:
        raise PermanentError(f"unknown sku {sku!r}", type="UnknownProduct")
    order_id = f"ord-{ctx.saga_uid[:8]}"  # one order per saga, however often this step runs
    total = unit_price * qty
    shop.orders.setdefault(
        order_id, {"customer": ctx.context.get("customer"), "sku": sku, "quantity": qty}
    )
    shop.note(ctx, f"order {order_id} created ({qty} x {sku}, {total} total)")
    return answer(ctx, {"order_id": order_id, "sku": sku, "quantity": qty, "total": float(total)})


@worker.compensation("orders.delete")
async def delete_order(ctx: StepContext) -> None:
    order_id = (ctx.step_output or {}).get("order_id")
    if shop.orders.pop(str(order_id), None) is not None:
        shop.note(ctx, f"order {order_id} deleted")


@worker.step("inventory.reserve")
async def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    if (known := answered(ctx)) is not None:
        return known
    order = ctx.dependency_outputs["create_order"]
    order_id, sku = str(order["order_id"]), str(order["sku"])
    qty = quantity(order["quantity"], "quantity")
    if order_id not in shop.reservations:
        if shop.stock[sku] < qty:
            raise PermanentError(
                f"only {shop.stock[sku]} of {sku} left, {qty} wanted", type="OutOfStock"
            )
        shop.stock[sku] -= qty
        shop.reservations[order_id] = {"sku": sku, "quantity": qty}
        shop.note(ctx, f"reserved {qty} x {sku} for {order_id} ({shop.stock[sku]} left)")
    warehouse = str(ctx.input.get("warehouse", "main"))
    return answer(
        ctx, {"reservation_id": f"res-{order_id}", "order_id": order_id, "warehouse": warehouse}
    )


@worker.compensation("inventory.release")
async def release_inventory(ctx: StepContext) -> None:
    order_id = str((ctx.step_output or {}).get("order_id"))
    reservation = shop.reservations.pop(order_id, None)
    if reservation is not None:
        shop.stock[reservation["sku"]] += reservation["quantity"]
        shop.note(ctx, f"released {reservation['quantity']} x {reservation['sku']} of {order_id}")


@worker.step("payment.charge")
async def charge_payment(ctx: StepContext) -> dict[str, Any]:
    if (known := answered(ctx)) is not None:
        return known
    order = ctx.dependency_outputs["create_order"]
    order_id = str(order["order_id"])
    amount = money(order["total"], "total")
    currency = str(ctx.context.get("currency", "EUR"))
    payment = shop.payments.setdefault(
        order_id, {"payment_id": f"pay-{order_id}", "amount": amount, "currency": currency}
    )
    shop.note(ctx, f"charged {amount} {currency} for {order_id}")
    return answer(
        ctx, {"payment_id": payment["payment_id"], "order_id": order_id, "amount": float(amount)}
    )


@worker.compensation("payment.refund")
async def refund_payment(ctx: StepContext) -> None:
    order_id = str((ctx.step_output or {}).get("order_id"))
    payment = shop.payments.pop(order_id, None)
    if payment is not None:
        shop.note(ctx, f"refunded {payment['amount']} {payment['currency']} for {order_id}")
