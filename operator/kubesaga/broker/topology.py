"""Names and declarations of the RabbitMQ topology (DESIGN.md section 4).

One durable direct exchange; one durable queue per action, bound with its own name as routing
key; a results queue for the operator and a dead-letter queue for messages nobody can process.
Declaring is idempotent, so the operator (before publishing) and workers (on start) both do it and
commands wait in their queue for workers that start later.
"""

from __future__ import annotations

import re
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from kubesaga.models import limits

EXCHANGE = "kubesaga"
RESULTS_QUEUE = "kubesaga.results"
DEAD_LETTER_QUEUE = "kubesaga.dead-letter"
ACTION_QUEUE_PREFIX = "kubesaga.action."

COMMAND_TYPE = "kubesaga.command.v1"
RESULT_TYPE = "kubesaga.result.v1"
HEADER_SAGA = "x-kubesaga-saga"
HEADER_REASON = "x-kubesaga-reason"
HEADER_SOURCE_QUEUE = "x-kubesaga-source-queue"
HEADER_MESSAGE_ID = "x-kubesaga-message-id"

_ACTION = re.compile(limits.ACTION_PATTERN)


def action_queue(action: str) -> str:
    """``kubesaga.action.<action>``; also the routing key. Rejects names unsafe for AMQP."""
    if len(action) > limits.MAX_ACTION_LENGTH or not _ACTION.fullmatch(action):
        raise ValueError(
            f"invalid action name {action!r}: expected {limits.ACTION_PATTERN}, "
            f"at most {limits.MAX_ACTION_LENGTH} characters"
        )
    return ACTION_QUEUE_PREFIX + action


def queue_arguments(*, quorum: bool) -> dict[str, Any]:
    """Only the queue type.

    No ``x-dead-letter-*`` arguments: kubesaga dead-letters explicitly (publishing the message
    with its reason), and a dead-letter name baked into a queue's arguments would make every
    later declaration with another name fail with PRECONDITION_FAILED (two installations or test
    runs sharing an action queue). Broker-side dead-lettering is a policy, if you want it.
    """
    return {"x-queue-type": "quorum"} if quorum else {}


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(EXCHANGE, ExchangeType.DIRECT, durable=True)


async def declare_queue(
    channel: AbstractChannel,
    exchange: AbstractExchange,
    name: str,
    *,
    quorum: bool,
) -> AbstractQueue:
    """A durable queue bound to the exchange under its own name."""
    queue = await channel.declare_queue(
        name,
        durable=True,
        arguments=queue_arguments(quorum=quorum),
    )
    await queue.bind(exchange, routing_key=name)
    return queue
