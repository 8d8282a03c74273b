"""A worker whose refund gateway a human can fix: for the redrive tests of both suites.

``order`` and ``payment`` succeed, ``ship`` fails permanently; the compensation of a step whose
input has ``gateway`` fails permanently while the gateway is down. Once up, ``hold`` makes each
refund wait for ``release`` (so a test can kill the operator while it runs).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kubesaga import PermanentError, StepContext, Worker
from tests.integration.scripted import Ledger, step


@dataclass
class Gateway:
    """A refund gateway a human can fix: compensations of ``gateway`` steps fail while down."""

    down: bool = True
    hold: bool = False
    """Once up, hold each refund until ``release`` (to kill the operator meanwhile)."""
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def gateway_worker(prefix: str) -> tuple[Worker, Ledger, Gateway]:
    worker, ledger, gateway = Worker(f"gateway-{prefix}"), Ledger(), Gateway()

    @worker.step(f"{prefix}.do")
    async def do(ctx: StepContext) -> dict[str, Any]:
        ledger.record("do", "start", ctx)
        if ctx.input.get("fail"):
            raise PermanentError("card declined", type="Declined")
        ledger.record("do", "end", ctx)
        return {"step": ctx.step_name}

    @worker.compensation(f"{prefix}.undo")
    async def undo(ctx: StepContext) -> None:
        ledger.record("undo", "start", ctx)
        if ctx.input.get("gateway"):
            if gateway.down:
                raise PermanentError("refund gateway down", type="GatewayDown")
            if gateway.hold:
                gateway.entered.set()
                await gateway.release.wait()
        assert ctx.step_output == {"step": ctx.step_name}, "the recorded output is kept"
        ledger.record("undo", "end", ctx)

    return worker, ledger, gateway


def refund_saga(prefix: str) -> list[dict[str, Any]]:
    """order, then refundable payment, then a shipment that fails: payment's refund fails."""
    return [
        step(prefix, "order"),
        step(prefix, "payment", gateway=True),
        step(prefix, "ship", fail=True),
    ]
