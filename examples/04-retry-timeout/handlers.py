"""Example 04: a retryable error and a timed-out attempt, both retried to success.

Run the handlers with ``kubesaga worker handlers:worker --app-dir examples/04-retry-timeout``.

- ``inventory.reserve`` raises ``RetryableError`` while the simulated warehouse API is down (the
  first ``unavailable_attempts`` attempts): the operator retries it after the step's backoff.
- ``payment.charge`` hangs on its first ``slow_attempts`` attempts. The step's ``timeoutSeconds``
  ends such an attempt: the worker cancels the handler at the deadline it got with the command
  and the operator records a ``Timeout`` (retryable) and dispatches attempt 2.

``ctx.attempt`` counts from 1 and is the number ``kubesaga get`` shows. A retry is a new dispatch
(new ``ctx.dispatch_id``); the business keys (one order, one reservation, one payment per saga)
keep the retried steps from doing their work twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from kubesaga import PermanentError, RetryableError, StepContext, Worker

log = logging.getLogger("examples.retry_timeout")

worker = Worker("retry-timeout")

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Attempt:
    saga: str
    step: str
    attempt: int
    outcome: str
    """"ok", "unavailable" or "hung" (cancelled at the deadline)."""


@dataclass
class Shop:
    """The in-memory services of this worker process."""

    stock: dict[str, int] = field(default_factory=lambda: {"LAMP-3": 50})
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    reservations: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, Decimal] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Outputs by dispatch id: a redelivered command gets the same answer."""
    journal: list[Attempt] = field(default_factory=list)

    def note(self, ctx: StepContext, outcome: str) -> None:
        self.journal.append(Attempt(ctx.saga_name, ctx.step_name, ctx.attempt, outcome))
        log.info("%s: %s attempt %d: %s", ctx.saga_name, ctx.step_name, ctx.attempt, outcome)


shop = Shop()


def number(value: Any, name: str) -> float:
    """A finite JSON number (int or float; never bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentError(f"{name} must be a number, got {value!r}", type="InvalidInput")
    return float(value)


def whole(value: Any, name: str) -> int:
    """A whole number from JSON, which may arrive as 3 or 3.0."""
    result = number(value, name)
    if result != int(result) or result < 0:
        raise PermanentError(f"{name} must be a whole number, got {value!r}", type="InvalidInput")
    return int(result)


@worker.step("ex04.orders.create")
async def create_order(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    qty = whole(ctx.input.get("quantity"), "quantity")
    unit_price = Decimal(str(number(ctx.input.get("unit_price"), "unit_price")))
    total = (unit_price * qty).quantize(CENT, rounding=ROUND_HALF_EVEN)
    order_id = f"ord-{ctx.saga_uid[:8]}"
    sku = str(ctx.input.get("sku"))
    shop.orders.setdefault(order_id, {"sku": sku, "quantity": qty, "total": total})
    shop.note(ctx, "ok")
    output = {"order_id": order_id, "sku": sku, "quantity": qty, "total": float(total)}
    return shop.answers.setdefault(ctx.dispatch_id, output)


@worker.compensation("ex04.orders.delete")
async def delete_order(ctx: StepContext) -> None:
    shop.orders.pop(str((ctx.step_output or {}).get("order_id")), None)


@worker.step("ex04.inventory.reserve")
async def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    if ctx.attempt <= whole(ctx.input.get("unavailable_attempts", 0), "unavailable_attempts"):
        shop.note(ctx, "unavailable")
        raise RetryableError(
            f"warehouse {ctx.input.get('warehouse')} answered 503 Service Unavailable",
            type="WarehouseUnavailable",
        )
    order = ctx.dependency_outputs["create_order"]
    order_id, sku, qty = str(order["order_id"]), str(order["sku"]), whole(order["quantity"], "q")
    if order_id not in shop.reservations:
        if shop.stock.get(sku, 0) < qty:
            raise PermanentError(f"{sku} is out of stock", type="OutOfStock")
        shop.stock[sku] -= qty
        shop.reservations[order_id] = {"sku": sku, "quantity": qty}
    shop.note(ctx, "ok")
    output = {"order_id": order_id, "warehouse": ctx.input.get("warehouse")}
    return shop.answers.setdefault(ctx.dispatch_id, output)


@worker.compensation("ex04.inventory.release")
async def release_inventory(ctx: StepContext) -> None:
    reservation = shop.reservations.pop(str((ctx.step_output or {}).get("order_id")), None)
    if reservation is not None:
        shop.stock[reservation["sku"]] += reservation["quantity"]


@worker.step("ex04.payment.charge")
async def charge_payment(ctx: StepContext) -> dict[str, Any]:
    if (known := shop.answers.get(ctx.dispatch_id)) is not None:
        return known
    if ctx.attempt <= whole(ctx.input.get("slow_attempts", 0), "slow_attempts"):
        try:
            await asyncio.sleep(number(ctx.input.get("hang_seconds", 60), "hang_seconds"))
        except asyncio.CancelledError:
            shop.note(ctx, "hung")  # the worker cancelled us at the attempt's deadline
            raise
    order = ctx.dependency_outputs["create_order"]
    order_id = str(order["order_id"])
    amount = shop.payments.setdefault(order_id, Decimal(str(number(order["total"], "total"))))
    shop.note(ctx, "ok")
    output = {"payment_id": f"pay-{order_id}", "order_id": order_id, "amount": float(amount)}
    return shop.answers.setdefault(ctx.dispatch_id, output)


@worker.compensation("ex04.payment.refund")
async def refund_payment(ctx: StepContext) -> None:
    shop.payments.pop(str((ctx.step_output or {}).get("order_id")), None)
