"""Queue arguments someone else chose: the documented topology, and mismatches that never crash.

docs/protocol.md says quorum queues (``KUBESAGA_QUORUM_QUEUES=true``) apply to action queues
only; results and dead-letter queues stay classic. A handler written from that document may
declare the queues before the operator starts, and an administrator may pre-declare them with
other arguments: operator and workers then use the existing queues, log which argument differs
and count it (issue 10, defect 1).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import ChannelPreconditionFailed

from kubesaga import AsyncSagaClient, SagaPhase, Worker
from kubesaga.broker import Broker, BrokerSettings, Outcome, action_queue
from kubesaga.models import Command, CommandKind, SagaRef
from kubesaga.settings import Settings
from kubesaga.worker import StepContext
from tests.integration.harness import free_port, operator_task, unique, worker_task
from tests.integration.scripted import scripted_worker, step

pytestmark = pytest.mark.integration

WAIT_S = 60
QUORUM = {"x-queue-type": "quorum"}


@pytest_asyncio.fixture(loop_scope="session")
async def cleanup(amqp_connection: AbstractRobustConnection) -> AsyncIterator[list[str]]:
    """Queue names to delete after the test."""
    names: list[str] = []
    yield names
    channel = await amqp_connection.channel()
    for name in names:
        await channel.queue_delete(name)
    await channel.close()


async def declare(
    connection: AbstractRobustConnection, name: str, arguments: dict[str, Any] | None = None
) -> None:
    """Declare ``name`` as an outsider would: durable, with ``arguments``; raises on mismatch."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    finally:
        if not channel.is_closed:
            await channel.close()


async def test_quorum_setting_makes_action_queues_quorum_and_leaves_the_others_classic(
    amqp_connection: AbstractRobustConnection, settings: BrokerSettings, cleanup: list[str]
) -> None:
    action = unique("test.quorum")
    cleanup.append(action_queue(action))
    broker = await Broker.connect(dataclasses.replace(settings, quorum_queues=True))
    try:
        await broker.declare_action(action)
    finally:
        await broker.close()
    # Exactly what a handler written from docs/protocol.md declares; each raises on mismatch.
    await declare(amqp_connection, settings.results_queue)
    await declare(amqp_connection, settings.dead_letter_queue)
    await declare(amqp_connection, action_queue(action), QUORUM)
    with pytest.raises(ChannelPreconditionFailed):
        await declare(amqp_connection, action_queue(action))


async def test_queues_existing_with_other_arguments_are_used_and_reported(
    amqp_connection: AbstractRobustConnection, settings: BrokerSettings, cleanup: list[str]
) -> None:
    action = unique("test.mismatch")
    cleanup.append(action_queue(action))
    await declare(amqp_connection, settings.results_queue, QUORUM)
    await declare(amqp_connection, settings.dead_letter_queue, QUORUM)
    await declare(amqp_connection, action_queue(action), QUORUM)
    reported: list[tuple[str, str]] = []
    broker = await Broker.connect(
        settings, on_queue_mismatch=lambda queue, arg: reported.append((queue, arg))
    )
    received: asyncio.Future[Command] = asyncio.get_running_loop().create_future()

    async def handle(command: Command) -> Outcome:
        received.set_result(command)
        return Outcome.ack()

    try:
        await broker.consume_commands([action], handle, prefetch=1)
        command = Command(
            dispatch_id=f"uid-1/create/execute/1/{unique('x')}",
            saga=SagaRef(namespace="shop", name="order-1", uid="uid-1"),
            step="create",
            kind=CommandKind.EXECUTE,
            action=action,
            attempt=1,
        )
        await broker.publish_command(command)
        async with asyncio.timeout(WAIT_S):
            assert (await received).dispatch_id == command.dispatch_id
    finally:
        await broker.close()
    assert sorted(reported) == sorted(
        [
            (settings.dead_letter_queue, "x-queue-type"),
            (settings.results_queue, "x-queue-type"),
            (action_queue(action), "x-queue-type"),
        ]
    )


async def test_worker_serves_an_action_queue_declared_with_other_arguments(
    amqp_connection: AbstractRobustConnection,
    amqp_url: str,
    settings: BrokerSettings,
    cleanup: list[str],
) -> None:
    action = unique("test.worker-mismatch")
    cleanup.append(action_queue(action))
    await declare(amqp_connection, action_queue(action), QUORUM)
    worker = Worker("mismatch")

    @worker.step(action)
    async def create(ctx: StepContext) -> dict[str, Any]:
        return {"ok": True}

    broker = await Broker.connect(settings)
    results: asyncio.Queue[bytes] = asyncio.Queue()
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(settings.results_queue, passive=True)

    async def on_result(message: Any) -> None:
        await message.ack()
        await results.put(message.body)

    await queue.consume(on_result)
    worker_settings = Settings(
        amqp_url=amqp_url,
        results_queue=settings.results_queue,
        dead_letter_queue=settings.dead_letter_queue,
    )
    try:
        async with worker_task(worker, worker_settings) as task:
            await broker.publish_command(
                Command(
                    dispatch_id=f"uid-1/create/execute/1/{unique('x')}",
                    saga=SagaRef(namespace="shop", name="order-1", uid="uid-1"),
                    step="create",
                    kind=CommandKind.EXECUTE,
                    action=action,
                    attempt=1,
                )
            )
            async with asyncio.timeout(WAIT_S):
                body = await results.get()
            assert not task.done()
    finally:
        await channel.close()
        await broker.close()
    assert b'"status":"succeeded"' in body


async def test_operator_with_quorum_queues_runs_sagas_after_a_handler_declared_first(
    amqp_connection: AbstractRobustConnection,
    operator_settings: Settings,
    saga_crd: dict[str, Any],
    saga_client: AsyncSagaClient,
    prefix: str,
    cleanup: list[str],
) -> None:
    """The issue's scenario: a handler starts first and declares the queues as documented (and
    the dead-letter queue, by mistake, as quorum); the operator starts anyway and counts it."""
    settings = operator_settings.model_copy(
        update={"quorum_queues": True, "metrics_port": free_port(), "metrics_host": "127.0.0.1"}
    )
    cleanup += [settings.results_queue, settings.dead_letter_queue]
    await declare(amqp_connection, settings.results_queue)
    await declare(amqp_connection, settings.dead_letter_queue, QUORUM)
    worker, _ = scripted_worker(prefix)
    cleanup += [action_queue(action) for action in worker.actions]
    for action in worker.actions:
        await declare(amqp_connection, action_queue(action), QUORUM)
    async with operator_task(settings), worker_task(worker, settings):
        await saga_client.start("quorum-1", [step(prefix, "create_order")])
        saga = await saga_client.wait("quorum-1", WAIT_S)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
            async with http.get(url) as response:
                metrics = await response.text()
    assert saga.phase is SagaPhase.COMPLETED
    line = (
        "kubesaga_queue_argument_mismatches_total"
        f'{{argument="x-queue-type",queue="{settings.dead_letter_queue}"}} 1.0'
    )
    assert line in metrics
