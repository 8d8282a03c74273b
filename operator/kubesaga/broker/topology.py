"""Names and declarations of the RabbitMQ topology (docs/protocol.md, "Topology").

One durable direct exchange; one durable queue per action, bound with its own name as routing
key; a results queue for the operator and a dead-letter queue for messages nobody can process.
Declaring is idempotent, so the operator (before publishing) and workers (on start) both do it and
commands wait in their queue for workers that start later.

Several parties declare the same queues (operators, Python workers, handlers in other languages,
an administrator's policy or pre-declared queue). A queue that already exists with other
arguments is used as it is: the mismatch is reported, never fatal, so no process crash-loops over
arguments someone else chose.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue
from aiormq.exceptions import ChannelPreconditionFailed

from kubesaga.models import limits
from kubesaga.settings import default_of

EXCHANGE = "kubesaga"
RESULTS_QUEUE: str = default_of("results_queue")
"""The default results queue; its one source is ``Settings.results_queue``."""
DEAD_LETTER_QUEUE: str = default_of("dead_letter_queue")
"""The default dead-letter queue; its one source is ``Settings.dead_letter_queue``."""
ACTION_QUEUE_PREFIX = "kubesaga.action."

COMMAND_TYPE = "kubesaga.command.v1"
RESULT_TYPE = "kubesaga.result.v1"
HEADER_SAGA = "x-kubesaga-saga"
HEADER_REASON = "x-kubesaga-reason"
HEADER_SOURCE_QUEUE = "x-kubesaga-source-queue"

_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)'")

MismatchHook = Callable[[str, str], None]
"""``on_mismatch(queue, argument)``: a queue exists with another value of ``argument``."""

MismatchReport = Callable[[str, str, str], None]
"""``report(queue, argument, broker_reply)``, called by ``declare_queue`` on a mismatch."""


def action_queue(action: str) -> str:
    """``kubesaga.action.<action>``; also the routing key. Rejects names unsafe for AMQP."""
    return ACTION_QUEUE_PREFIX + limits.check_action(action)


def queue_arguments(*, quorum: bool) -> dict[str, Any]:
    """Only the queue type (quorum applies to action queues only, see ``declare_queue``).

    No ``x-dead-letter-*`` arguments: kubesaga dead-letters explicitly (publishing the message
    with its reason), and a dead-letter name baked into a queue's arguments would make every
    later declaration with another name fail with PRECONDITION_FAILED (two installations or test
    runs sharing an action queue). Broker-side dead-lettering is a policy, if you want it.
    """
    return {"x-queue-type": "quorum"} if quorum else {}


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(EXCHANGE, ExchangeType.DIRECT, durable=True)


async def declare_queue(
    connection: AbstractConnection,
    channel: AbstractChannel,
    exchange: AbstractExchange,
    name: str,
    *,
    quorum: bool,
    report: MismatchReport,
    single_active_consumer: bool = False,
) -> AbstractQueue:
    """A durable queue bound to the exchange under its own name, on ``channel``.

    The declaration with our arguments is tried on a channel of its own first, because a
    PRECONDITION_FAILED answer closes the channel it was sent on. When the queue exists with
    other arguments, it is declared passively (accepting whatever it is) and ``report`` is told
    which argument the broker named. ``single_active_consumer`` (the shard results queues):
    the broker delivers to one consumer at a time, the next one taking over only once it is
    cancelled or its connection closed, so a replica that lost a shard while frozen cannot keep
    taking that shard's results beside the new owner.
    """
    arguments = queue_arguments(quorum=quorum)
    if single_active_consumer:
        arguments["x-single-active-consumer"] = True
    probe = await connection.channel()
    try:
        await probe.declare_queue(name, durable=True, arguments=arguments)
        mismatch = None
    except ChannelPreconditionFailed as error:
        mismatch = str(error)
    finally:
        with contextlib.suppress(Exception):  # closed by the broker after a refusal
            await probe.close()
    if mismatch is None:
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
    else:
        found = _INEQUIVALENT.search(mismatch)
        report(name, found.group(1) if found else "unknown", mismatch)
        queue = await channel.declare_queue(name, passive=True)
    await queue.bind(exchange, routing_key=name)
    return queue
