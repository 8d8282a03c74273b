"""Building AMQP messages from protocol models, and publishing them with confirms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractExchange

from kubesaga.broker.topology import (
    COMMAND_TYPE,
    HEADER_REASON,
    HEADER_SAGA,
    HEADER_SOURCE_QUEUE,
    RESULT_TYPE,
)
from kubesaga.models import Command, Result, WireModel

CONTENT_TYPE = "application/json"
APP_ID = "kubesaga"
_MAX_SHORTSTR_BYTES = 255
_MAX_REASON_CHARS = 4096
_MAX_SAGA_HEADER_CHARS = 512
"""Headers travel in one AMQP frame (RabbitMQ's frame_max is 128 KiB): an unbounded header lets
one message (e.g. a saga name of 200,000 characters) make the broker close the whole connection
with FRAME_ERROR, again on every redelivery. Names of real Sagas are far shorter."""


def encode(model: WireModel) -> bytes:
    """The model's wire form as compact UTF-8 JSON."""
    return json.dumps(model.to_wire(), separators=(",", ":"), ensure_ascii=False).encode()


def command_message(command: Command, reply_to: str | None = None) -> Message:
    """``reply_to`` names the results queue the result should go to (docs/protocol.md)."""
    return _message(
        encode(command),
        message_id=command.dispatch_id,
        type=COMMAND_TYPE,
        saga=f"{command.saga.namespace}/{command.saga.name}",
        reply_to=reply_to,
    )


def result_message(result: Result) -> Message:
    return _message(
        encode(result),
        message_id=result.dispatch_id,
        type=RESULT_TYPE,
        saga=f"{result.saga.namespace}/{result.saga.name}",
    )


KEPT_PROPERTIES = (
    "content_type",
    "content_encoding",
    "message_id",
    "correlation_id",
    "type",
    "timestamp",
    "app_id",
    "priority",
    "reply_to",
)
"""Properties a dead-letter copy keeps from the original (docs/protocol.md). Not kept:
``expiration`` (a dead letter stays until someone looks) and ``user_id`` (RabbitMQ refuses a
publish whose user_id is not the publisher's own user)."""


def dead_letter_message(
    body: bytes,
    reason: str,
    source_queue: str,
    headers: Mapping[str, Any] | None,
    properties: Mapping[str, Any] | None = None,
) -> Message:
    """The original body, properties and headers, plus why and where from in two headers."""
    kept = {k: v for k, v in (properties or {}).items() if k in KEPT_PROPERTIES and v is not None}
    return Message(
        body,
        headers={
            **(headers or {}),
            HEADER_REASON: reason[:_MAX_REASON_CHARS],
            HEADER_SOURCE_QUEUE: source_queue,
        },
        delivery_mode=DeliveryMode.PERSISTENT,
        **kept,
    )


def _message(
    body: bytes, *, message_id: str, type: str, saga: str, reply_to: str | None = None
) -> Message:
    # message_id is an AMQP short string; a longer dispatch id (the model allows 512) stays in
    # the body only.
    fits = len(message_id.encode()) <= _MAX_SHORTSTR_BYTES
    return Message(
        body,
        content_type=CONTENT_TYPE,
        content_encoding="utf-8",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message_id if fits else None,
        type=type,
        app_id=APP_ID,
        headers={HEADER_SAGA: saga[:_MAX_SAGA_HEADER_CHARS]},
        reply_to=reply_to,
    )


async def publish(exchange: AbstractExchange, message: Message, routing_key: str) -> None:
    """Publish and wait for the broker's confirm.

    Raises ``aio_pika.exceptions.DeliveryError`` on a nack and ``PublishError`` when no queue took
    the message (the channel is opened with ``on_return_raises``).
    """
    await exchange.publish(message, routing_key, mandatory=True)
