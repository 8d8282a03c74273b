"""Cancelling ``Worker.run`` stops it, even when the broker library swallowed the cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import kubesaga.broker
from kubesaga import StepContext, Worker
from kubesaga.settings import Settings

pytestmark = pytest.mark.unit


class SwallowingBroker:
    """A broker whose consumer setup swallows a cancel, as aio-pika's channel handling did
    once in a test teardown (the worker then waited for ``stop`` for ever)."""

    connected = True

    def __init__(self) -> None:
        self.setting_up = asyncio.Event()
        self.closed = False

    async def consume_commands(self, *_: Any, **__: Any) -> None:
        self.setting_up.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return  # swallowed: setup "completes"

    async def stop_consuming(self) -> None:
        pass

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


async def test_a_cancel_swallowed_while_consumers_are_set_up_still_stops_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = SwallowingBroker()

    class Connect:
        @staticmethod
        async def connect(*_: Any, **__: Any) -> SwallowingBroker:
            return broker

    monkeypatch.setattr(kubesaga.broker, "Broker", Connect)
    worker = Worker("w")

    @worker.step("a")
    def a(ctx: StepContext) -> None:
        return None

    run = asyncio.create_task(worker.run(Settings(amqp_url="amqp://u:p@127.0.0.1:1/v")))
    await broker.setting_up.wait()
    run.cancel()
    async with asyncio.timeout(10):  # without the fix, run waits for its stop event for ever
        await asyncio.gather(run, return_exceptions=True)
    assert run.cancelled()
    assert broker.closed
