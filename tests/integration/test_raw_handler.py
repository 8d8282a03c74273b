"""A handler written from docs/protocol.md alone (plain AMQP, no kubesaga SDK), started before the
operator, with quorum queues on: the saga runs to the end (issue 10, "done when").

Everything the handler does is what the document says, in its order: declare the topology with the
documented arguments, consume its action queue with a prefetch above 1, dead-letter what is not
its own, publish results mandatory and confirmed, ack last.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from kubesaga import AsyncSagaClient, SagaPhase
from kubesaga.settings import Settings
from tests.integration.harness import operator_task

pytestmark = pytest.mark.usefixtures("saga_crd")

WAIT_S = 60
ANSWER_FIELDS = ("version", "dispatchId", "saga", "step", "kind", "attempt")
"""Copied from the command into its result (docs/protocol.md, Result)."""


class RawHandler:
    """One action (and its compensation) served straight from docs/protocol.md."""

    def __init__(self, connection: AbstractRobustConnection, settings: Settings, prefix: str):
        self.connection = connection
        self.results, self.dead_letters = settings.results_queue, settings.dead_letter_queue
        self.actions = [f"{prefix}.raw", f"{prefix}.raw-undo"]
        self.ran: list[tuple[str, str]] = []

    async def start(self) -> None:
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=4)
        self.exchange = await channel.declare_exchange("kubesaga", "direct", durable=True)
        for name in (self.results, self.dead_letters):  # classic: no arguments
            queue = await channel.declare_queue(name, durable=True)
            await queue.bind(self.exchange, routing_key=name)
        for action in self.actions:
            name = f"kubesaga.action.{action}"
            queue = await channel.declare_queue(
                name, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await queue.bind(self.exchange, routing_key=name)
            await queue.consume(functools.partial(self.on_command, name))

    async def on_command(self, queue: str, message: AbstractIncomingMessage) -> None:
        try:
            command = json.loads(message.body)
            ours = command["version"] == 1 and queue == f"kubesaga.action.{command['action']}"
        except (ValueError, KeyError, TypeError) as error:
            await self.dead_letter(message, queue, f"malformed message: {error!r}")
            return
        if not ours:
            await self.dead_letter(message, queue, "command arrived on another action's queue")
            return
        self.ran.append((command["kind"], command["step"]))
        result: dict[str, Any] = {key: command[key] for key in ANSWER_FIELDS}
        if command["kind"] == "execute" and command["input"].get("fail"):
            refusal = {"type": "Refused", "message": "asked to fail", "retryable": False}
            result.update(status="failed", error=refusal)
        elif command["kind"] == "execute":
            result.update(status="succeeded", output={"by": "raw"})
        else:
            result.update(status="succeeded")  # a compensate result carries no output
        await self.exchange.publish(
            aio_pika.Message(
                json.dumps(result).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=command["dispatchId"],
                type="kubesaga.result.v1",
            ),
            routing_key=self.results,
            mandatory=True,
        )
        await message.ack()  # only after the confirm

    async def dead_letter(self, message: AbstractIncomingMessage, queue: str, reason: str) -> None:
        headers = {**(message.headers or {}), "x-kubesaga-reason": reason}
        headers["x-kubesaga-source-queue"] = queue
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            message_id=message.message_id,
            type=message.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.exchange.publish(copy, routing_key=self.dead_letters, mandatory=True)
        await message.ack()


@pytest_asyncio.fixture(loop_scope="session")
async def raw_handler(
    amqp_url: str, operator_settings: Settings, prefix: str
) -> AsyncIterator[RawHandler]:
    connection = await aio_pika.connect_robust(amqp_url)
    handler = RawHandler(connection, operator_settings, prefix)
    try:
        await handler.start()
        yield handler
    finally:
        channel = await connection.channel()
        for action in handler.actions:
            await channel.queue_delete(f"kubesaga.action.{action}")
        await connection.close()


async def test_handler_from_the_protocol_document_runs_a_saga_with_quorum_queues(
    raw_handler: RawHandler, operator_settings: Settings, saga_client: AsyncSagaClient
) -> None:
    do, undo = raw_handler.actions
    steps = [
        {"name": "first", "action": do, "compensation": undo, "input": {}},
        {"name": "second", "action": do, "compensation": undo, "input": {"fail": True}},
    ]
    settings = operator_settings.model_copy(update={"quorum_queues": True})
    async with operator_task(settings):  # started after the handler declared everything
        await saga_client.start("raw", steps)
        saga = await saga_client.wait("raw", WAIT_S)
    assert saga.phase is SagaPhase.COMPENSATED
    assert saga.status is not None and saga.status.step("first").output == {"by": "raw"}
    assert raw_handler.ran == [("execute", "first"), ("execute", "second"), ("compensate", "first")]
