"""Consuming a queue: parse, hand to a handler, and settle each message exactly once.

Every delivered message gets its own task, so up to ``prefetch`` messages are processed at once.
The handler answers with an ``Outcome``; this module turns it into broker actions, the way
aio-pika's ``patterns/master.py`` maps exceptions to ack/reject. No path drops a message: a
message is acked only after it was handled or copied to the dead-letter queue, and anything
cancelled or failing on the way is nacked back onto its queue.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag

log = logging.getLogger(__name__)

T = TypeVar("T")

CANCEL_TIMEOUT_S = 2.0
"""How long stopping a consumer may wait for the broker; a connection that is down has none."""

DeadLetterFn = Callable[
    [bytes, str, str, Mapping[str, Any] | None, Mapping[str, Any] | None], Awaitable[None]
]
"""``dead_letter(body, reason, source_queue, headers, properties)``: ``Broker.dead_letter``."""


class Disposition(enum.Enum):
    """What becomes of a message once its handler is done with it."""

    ACK = "ack"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class Outcome:
    """A handler's verdict on one message; ``reason`` is logged and kept on dead letters."""

    disposition: Disposition
    reason: str = ""

    @classmethod
    def ack(cls) -> Outcome:
        return cls(Disposition.ACK)

    @classmethod
    def requeue(cls, reason: str) -> Outcome:
        return cls(Disposition.REQUEUE, reason)

    @classmethod
    def dead_letter(cls, reason: str) -> Outcome:
        return cls(Disposition.DEAD_LETTER, reason)


class Subscription(Generic[T]):
    """Consumers on one channel, and the tasks processing what they deliver.

    Shutting down is three steps so callers can choose a grace period: ``cancel`` (no new
    deliveries), ``drain`` (wait for in-flight messages), ``abort`` (cancel what is left; each
    cancelled message is nacked back onto its queue).
    """

    def __init__(
        self,
        channel: AbstractChannel,
        *,
        parse: Callable[[bytes], T],
        handler: Callable[..., Awaitable[Outcome]],
        dead_letter: DeadLetterFn,
        requeue_delay: float,
        misplaced: Callable[[str, T], str | None] | None = None,
        reply_to: bool = False,
    ) -> None:
        """``handler(item)``, or ``handler(item, reply_to)`` with ``reply_to`` set: the
        message's AMQP ``reply_to`` property (None when absent), where a command's result goes."""
        self.channel = channel
        self._reply_to = reply_to
        self._misplaced = misplaced
        """``misplaced(queue, item)``: why ``item`` must not be handled from ``queue``, or None."""
        self._parse = parse
        self._handler = handler
        self._dead_letter = dead_letter
        self._requeue_delay = requeue_delay
        self._consumers: list[tuple[AbstractQueue, ConsumerTag]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def consume(self, queue: AbstractQueue) -> None:
        tag = await queue.consume(partial(self._on_message, queue.name))
        self._consumers.append((queue, tag))

    async def cancel(self) -> None:
        """Stop deliveries; messages already delivered keep being processed."""
        self._stopping = True
        consumers, self._consumers = self._consumers, []
        for queue, tag in consumers:
            try:
                # A robust channel waits for its connection: with the broker gone, for ever.
                async with asyncio.timeout(CANCEL_TIMEOUT_S):
                    await queue.cancel(tag)
            except Exception as exc:  # the channel is gone: so are its deliveries
                log.debug("cancelling consumer on %s failed: %r", queue.name, exc)

    async def drain(self) -> None:
        """Wait until no message is in flight (bound it with ``asyncio.timeout``)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def abort(self) -> None:
        """Cancel in-flight processing; the messages go back to their queues."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.cancel()
        await self.abort()
        if not self.channel.is_closed:
            await self.channel.close()

    async def _on_message(self, queue: str, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            await _nack(message, queue)
            return
        task = asyncio.create_task(self._process(queue, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, queue: str, message: AbstractIncomingMessage) -> None:
        try:
            outcome = await self._outcome(queue, message)
            await self._settle(queue, message, outcome)
        except asyncio.CancelledError:
            if not message.processed:
                await asyncio.shield(_nack(message, queue))
            raise

    async def _outcome(self, queue: str, message: AbstractIncomingMessage) -> Outcome:
        try:
            item = self._parse(message.body)
        except ValueError as exc:  # pydantic's ValidationError, bad JSON included
            return Outcome.dead_letter(f"malformed message: {exc}")
        if self._misplaced is not None and (reason := self._misplaced(queue, item)):
            return Outcome.dead_letter(reason)
        try:
            if self._reply_to:
                return await self._handler(item, message.reply_to or None)
            return await self._handler(item)
        except Exception as exc:
            log.exception(
                "handler failed on a message from %s; requeueing it",
                queue,
                extra={"queue": queue, "message_id": message.message_id},
            )
            return Outcome.requeue(f"handler raised {exc.__class__.__name__}: {exc}")

    async def _settle(self, queue: str, message: AbstractIncomingMessage, outcome: Outcome) -> None:
        extra = {"queue": queue, "message_id": message.message_id, "reason": outcome.reason}
        if outcome.disposition is Disposition.DEAD_LETTER:
            properties = {
                "content_type": message.content_type,
                "content_encoding": message.content_encoding,
                "message_id": message.message_id,
                "correlation_id": message.correlation_id,
                "type": message.type,
                "timestamp": message.timestamp,
                "app_id": message.app_id,
                "priority": message.priority,
                "reply_to": message.reply_to,
            }
            try:
                await self._dead_letter(
                    message.body, outcome.reason, queue, dict(message.headers or {}), properties
                )
            except Exception:
                log.exception("dead-lettering a message from %s failed; requeueing it", queue)
                outcome = Outcome.requeue("dead-lettering failed")
            else:
                log.warning(
                    "dead-lettered a message from %s: %s", queue, outcome.reason, extra=extra
                )
                await _ack(message, queue)
                return
        if outcome.disposition is Disposition.REQUEUE:
            log.warning("requeueing a message from %s: %s", queue, outcome.reason, extra=extra)
            await asyncio.sleep(self._requeue_delay)  # a pause, so a failing message cannot spin
            await _nack(message, queue)
            return
        await _ack(message, queue)


async def _ack(message: AbstractIncomingMessage, queue: str) -> None:
    try:
        await message.ack()
    except Exception as exc:
        log.warning("ack on %s failed (%r); the broker will redeliver the message", queue, exc)


async def _nack(message: AbstractIncomingMessage, queue: str) -> None:
    try:
        await message.nack(requeue=True)
    except Exception as exc:
        log.warning("nack on %s failed (%r); the broker will redeliver the message", queue, exc)
