"""Example 05: a refund that waits for a manager's approval.

Run the handlers with ``kubesaga worker handlers:worker --app-dir examples/05-approval``.

``refunds.open`` records the refund request; the ``manager`` step is an approval step (no
handler: nothing is published for it); ``refunds.pay`` runs once the manager approved, and keeps
who approved and why with the payout: the approval step's output is ``{approved, by, reason}``,
read like any dependency's output. A rejection or the approval's timeout fails the ``manager``
step, and ``refunds.cancel`` undoes the request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kubesaga import PermanentError, StepContext, Worker

log = logging.getLogger("examples.approval")

worker = Worker("approval")


@dataclass
class Refunds:
    """The in-memory refund service of this worker process."""

    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    paid: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)


refunds = Refunds()


@worker.step("ex05.refunds.open")
async def open_refund(ctx: StepContext) -> dict[str, Any]:
    order = str(ctx.input.get("order", ""))
    amount = ctx.input.get("amount")
    if not order or isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        raise PermanentError(f"bad refund request {ctx.input!r}", type="InvalidInput")
    refund_id = f"rf-{ctx.saga_uid[:8]}"
    refunds.open.setdefault(refund_id, {"order": order, "amount": amount})
    log.info("%s: refund %s of %s opened for %s", ctx.saga_name, refund_id, amount, order)
    return {"refund_id": refund_id, "amount": amount}


@worker.compensation("ex05.refunds.cancel")
async def cancel_refund(ctx: StepContext) -> None:
    refund_id = str((ctx.step_output or {}).get("refund_id"))
    if refunds.open.pop(refund_id, None) is not None:
        refunds.cancelled.append(refund_id)
        log.info("%s: refund %s cancelled", ctx.saga_name, refund_id)


@worker.step("ex05.refunds.pay")
async def pay_refund(ctx: StepContext) -> dict[str, Any]:
    refund = ctx.dependency_outputs["open_refund"]
    approval = ctx.dependency_outputs["manager"]
    refund_id = str(refund["refund_id"])
    payout = {"amount": refund["amount"], "approved_by": approval["by"], "why": approval["reason"]}
    refunds.paid.setdefault(refund_id, payout)
    log.info("%s: refund %s paid, approved by %s", ctx.saga_name, refund_id, approval["by"])
    return {"refund_id": refund_id, **refunds.paid[refund_id]}
