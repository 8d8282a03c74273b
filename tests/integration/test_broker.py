"""The broker adapter against a real RabbitMQ, one behaviour per test.

Each test gets its own results and dead-letter queues (``BrokerSettings`` takes their names; the
defaults are the pinned ``kubesaga.results`` / ``kubesaga.dead-letter``) and its own action names,
so tests never see each other's messages. Waiting is on futures set by consumers, bounded by
``asyncio.timeout``; nothing sleeps in place of an event.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from kubesaga.broker import (
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    RESULTS_QUEUE,
    Broker,
    BrokerSettings,
    Outcome,
    action_queue,
)
from kubesaga.models import Command, CommandKind, Result, ResultStatus, SagaRef
from tests.integration.harness import unique

pytestmark = pytest.mark.integration

WAIT_S = 30


def make_command(action: str, **changes: object) -> Command:
    fields: dict[str, object] = {
        "dispatch_id": f"uid-1/create/execute/1/{uuid.uuid4().hex}",
        "saga": SagaRef(namespace="shop", name="order-1", uid="uid-1"),
        "step": "create",
        "kind": CommandKind.EXECUTE,
        "action": action,
        "attempt": 1,
        "input": {"sku": "A-1", "qty": 2},
    }
    return Command.model_validate({**fields, **changes})


def make_result(**changes: object) -> Result:
    fields: dict[str, object] = {
        "dispatch_id": f"uid-1/create/execute/1/{uuid.uuid4().hex}",
        "saga": SagaRef(namespace="shop", name="order-1", uid="uid-1"),
        "step": "create",
        "kind": CommandKind.EXECUTE,
        "attempt": 1,
        "status": ResultStatus.SUCCEEDED,
        "output": {"order_id": "o-1"},
    }
    return Result.model_validate({**fields, **changes})


async def ready_count(channel: AbstractChannel, queue: str) -> int:
    """Messages ready in ``queue`` (passive declare: fails if the queue does not exist)."""
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


async def first_message(channel: AbstractChannel, queue: str) -> AbstractIncomingMessage:
    """The next message delivered from ``queue``, acked."""
    arrived: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        if not arrived.done():
            arrived.set_result(message)

    q = await channel.declare_queue(queue, passive=True)
    tag = await q.consume(on_message)
    try:
        async with asyncio.timeout(WAIT_S):
            return await arrived
    finally:
        await q.cancel(tag)


async def publish_raw(channel: AbstractChannel, queue: str, body: bytes) -> None:
    await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)


def recorder(
    outcomes: list[Outcome],
) -> tuple[list[Result], asyncio.Future[None], Callable[[Result], Awaitable[Outcome]]]:
    """A handler answering ``outcomes`` in turn; the future resolves when all were used."""
    seen: list[Result] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(result: Result) -> Outcome:
        seen.append(result)
        outcome = outcomes[len(seen) - 1]
        if len(seen) == len(outcomes):
            done.set_result(None)
        return outcome

    return seen, done, handle


# ---------------------------------------------------------------------------------- topology


def test_action_queue_is_named_after_the_action() -> None:
    assert action_queue("orders.create") == "kubesaga.action.orders.create"


def test_action_queue_rejects_names_unsafe_for_amqp() -> None:
    with pytest.raises(ValueError, match="invalid action name"):
        action_queue("orders create")


async def test_topology_is_declared_idempotently_by_every_connect(
    amqp_url: str, channel: AbstractChannel
) -> None:
    first = await Broker.connect(BrokerSettings(url=amqp_url))
    second = await Broker.connect(BrokerSettings(url=amqp_url))
    await first.close()
    await second.close()
    await channel.declare_exchange(EXCHANGE, passive=True)
    for queue in (RESULTS_QUEUE, DEAD_LETTER_QUEUE):
        await channel.declare_queue(queue, passive=True)


async def test_declare_action_creates_the_action_queue_and_can_repeat(
    broker: Broker, channel: AbstractChannel
) -> None:
    action = unique("test.declare")
    await broker.declare_action(action)
    await broker.declare_action(action)
    assert await ready_count(channel, action_queue(action)) == 0
    await channel.queue_delete(action_queue(action))


async def test_action_queue_is_shared_by_installations_with_other_queue_names(
    amqp_url: str, channel: AbstractChannel
) -> None:
    """Two operators (or test runs) with their own results/dead-letter queues may declare the
    same action queue: no queue argument depends on those names."""
    action = unique("test.shared")
    brokers = [
        await Broker.connect(
            BrokerSettings(
                url=amqp_url,
                results_queue=unique(f"test.results.{n}"),
                dead_letter_queue=unique(f"test.dead-letter.{n}"),
            )
        )
        for n in (1, 2)
    ]
    try:
        for broker in brokers:
            await broker.declare_action(action)
    finally:
        for broker in brokers:
            await broker.close()
    await channel.queue_delete(action_queue(action))


# -------------------------------------------------------------------------------- publishing


async def test_published_command_lands_on_its_action_queue_persistent_with_the_dispatch_id(
    broker: Broker, channel: AbstractChannel
) -> None:
    action = unique("test.publish")
    command = make_command(action)
    await broker.publish_command(command)

    queue = await channel.declare_queue(action_queue(action), passive=True)
    message = await queue.get(no_ack=True)
    await queue.delete()
    assert message.message_id == command.dispatch_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.type == "kubesaga.command.v1"
    assert (message.headers or {})["x-kubesaga-saga"] == "shop/order-1"
    assert Command.model_validate_json(message.body) == command


async def test_command_is_published_again_after_its_queue_was_deleted(
    broker: Broker, channel: AbstractChannel
) -> None:
    action = unique("test.redeclare")
    await broker.publish_command(make_command(action))
    await channel.queue_delete(action_queue(action))
    command = make_command(action)

    await broker.publish_command(command)

    queue = await channel.declare_queue(action_queue(action), passive=True)
    message = await queue.get(no_ack=True)
    await queue.delete()
    assert message.message_id == command.dispatch_id


async def test_published_result_lands_on_the_results_queue(
    broker: Broker, settings: BrokerSettings, channel: AbstractChannel
) -> None:
    result = make_result()
    await broker.publish_result(result)
    message = await first_message(channel, settings.results_queue)
    assert message.message_id == result.dispatch_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.type == "kubesaga.result.v1"
    assert Result.model_validate_json(message.body) == result


async def test_dead_letter_keeps_body_reason_source_queue_and_calls_the_hook(
    settings: BrokerSettings, channel: AbstractChannel
) -> None:
    counted: list[tuple[str, str]] = []
    broker = await Broker.connect(settings, on_dead_letter=lambda q, r: counted.append((q, r)))
    try:
        await broker.dead_letter(b"opaque", "no such saga", "some.queue", {"x-extra": "kept"})
        message = await first_message(channel, settings.dead_letter_queue)
    finally:
        await broker.close()
        await channel.queue_delete(settings.results_queue)
        await channel.queue_delete(settings.dead_letter_queue)
    assert message.body == b"opaque"
    assert message.headers == {
        "x-extra": "kept",
        "x-kubesaga-reason": "no such saga",
        "x-kubesaga-source-queue": "some.queue",
    }
    assert counted == [("some.queue", "no such saga")]


# --------------------------------------------------------------------------------- consuming


async def test_acked_result_is_removed_from_the_queue(
    broker: Broker, settings: BrokerSettings, channel: AbstractChannel
) -> None:
    seen, done, handle = recorder([Outcome.ack()])
    await broker.consume_results(handle)
    result = make_result()
    await broker.publish_result(result)
    async with asyncio.timeout(WAIT_S):
        await done
        await broker.stop_consuming()
        await broker.drain()
    await broker.close()  # would return an unacked message to the queue
    assert seen == [result]
    assert await ready_count(channel, settings.results_queue) == 0


async def test_dead_lettered_result_goes_to_the_dead_letter_queue_with_its_reason(
    broker: Broker, settings: BrokerSettings, channel: AbstractChannel
) -> None:
    _, done, handle = recorder([Outcome.dead_letter("dispatch id does not match")])
    await broker.consume_results(handle)
    result = make_result()
    await broker.publish_result(result)

    message = await first_message(channel, settings.dead_letter_queue)
    async with asyncio.timeout(WAIT_S):
        await done
    assert Result.model_validate_json(message.body) == result
    assert message.headers == {
        "x-kubesaga-saga": "shop/order-1",
        "x-kubesaga-reason": "dispatch id does not match",
        "x-kubesaga-source-queue": settings.results_queue,
    }
    kept = ("message_id", "content_type", "content_encoding", "type", "app_id", "delivery_mode")
    assert {name: getattr(message, name) for name in kept} == {
        "message_id": result.dispatch_id,
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "type": "kubesaga.result.v1",
        "app_id": "kubesaga",
        "delivery_mode": aio_pika.DeliveryMode.PERSISTENT,
    }


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b"{not json", "Invalid JSON"),
        (json.dumps({**make_result().to_wire(), "version": 2}).encode(), "version"),
        (json.dumps({"dispatchId": "x"}).encode(), "Field required"),
    ],
    ids=["bad-json", "wrong-version", "schema-error"],
)
async def test_malformed_result_is_dead_lettered_and_the_next_one_still_handled(
    broker: Broker,
    settings: BrokerSettings,
    channel: AbstractChannel,
    body: bytes,
    reason_part: str,
) -> None:
    seen, done, handle = recorder([Outcome.ack()])
    await broker.consume_results(handle)
    await publish_raw(channel, settings.results_queue, body)
    good = make_result()
    await broker.publish_result(good)

    message = await first_message(channel, settings.dead_letter_queue)
    async with asyncio.timeout(WAIT_S):
        await done
    assert message.body == body
    reason = str((message.headers or {})["x-kubesaga-reason"])
    assert reason.startswith("malformed message:")
    assert reason_part in reason
    assert seen == [good]


async def test_requeued_result_is_delivered_again(broker: Broker) -> None:
    seen, done, handle = recorder([Outcome.requeue("status write conflicted"), Outcome.ack()])
    await broker.consume_results(handle)
    result = make_result()
    await broker.publish_result(result)
    async with asyncio.timeout(WAIT_S):
        await done
    assert seen == [result, result]


async def test_result_whose_handler_raises_is_delivered_again(broker: Broker) -> None:
    calls: list[Result] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(result: Result) -> Outcome:
        calls.append(result)
        if len(calls) == 1:
            raise RuntimeError("apiserver unavailable")
        done.set_result(None)
        return Outcome.ack()

    await broker.consume_results(handle)
    await broker.publish_result(make_result())
    async with asyncio.timeout(WAIT_S):
        await done
    assert len(calls) == 2 and calls[0] == calls[1]


async def test_results_are_handled_concurrently_up_to_prefetch(
    broker: Broker, settings: BrokerSettings
) -> None:
    assert settings.prefetch >= 3
    started: list[Result] = []
    all_started = asyncio.Event()
    release = asyncio.Event()

    async def handle(result: Result) -> Outcome:
        started.append(result)
        if len(started) == 3:
            all_started.set()
        await release.wait()
        return Outcome.ack()

    await broker.consume_results(handle)
    for _ in range(3):
        await broker.publish_result(make_result())
    async with asyncio.timeout(WAIT_S):
        await all_started.wait()  # three handlers blocked at once
    release.set()


async def test_consumed_command_reaches_the_handler(
    broker: Broker, channel: AbstractChannel
) -> None:
    action = unique("test.consume")
    received: asyncio.Future[Command] = asyncio.get_running_loop().create_future()

    async def handle(command: Command) -> Outcome:
        received.set_result(command)
        return Outcome.ack()

    await broker.consume_commands([action], handle, prefetch=4)
    command = make_command(action)
    await broker.publish_command(command)
    async with asyncio.timeout(WAIT_S):
        assert await received == command
    await channel.queue_delete(action_queue(action))


async def test_close_returns_a_message_still_in_flight_to_its_queue(
    settings: BrokerSettings, channel: AbstractChannel
) -> None:
    action = unique("test.abort")
    first = await Broker.connect(settings)
    started = asyncio.Event()

    async def hang(command: Command) -> Outcome:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    await first.consume_commands([action], hang, prefetch=1)
    command = make_command(action)
    await first.publish_command(command)
    async with asyncio.timeout(WAIT_S):
        await started.wait()
    await first.close()

    second = await Broker.connect(settings)
    redelivered: asyncio.Future[Command] = asyncio.get_running_loop().create_future()

    async def take(command: Command) -> Outcome:
        redelivered.set_result(command)
        return Outcome.ack()

    try:
        await second.consume_commands([action], take, prefetch=1)
        async with asyncio.timeout(WAIT_S):
            assert await redelivered == command
    finally:
        await second.close()
        for queue in (action_queue(action), settings.results_queue, settings.dead_letter_queue):
            await channel.queue_delete(queue)
