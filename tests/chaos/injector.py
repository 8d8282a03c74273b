"""The chaos run's other clients on the broker: an injector of duplicate and stale results, and
a reader of the dead-letter queue.

The injector taps the results exchange and re-publishes copies of what workers send: exact
duplicates, and stale copies (a wrong dispatch id or attempt), early or late. Every stale copy
must come out on the dead-letter queue with its reason; duplicates must change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from kubesaga.broker import EXCHANGE

DUPLICATE_P = 0.3
STALE_P = 0.15
INJECT_DELAY_MAX_S = 3.0


def reason_kind(reason: str) -> str:
    for prefix in ("stale or unknown dispatch id", "malformed message", "saga ", "no "):
        if reason.startswith(prefix):
            return prefix.strip()
    return reason[:60]


class Injector:
    """Taps the results exchange and re-publishes copies: exact duplicates and stale ones."""

    def __init__(
        self,
        amqp_url: str,
        results_queue: str,
        tap: str,
        rng: random.Random,
        shard_queues: tuple[str, ...] = (),
    ) -> None:
        self.amqp_url = amqp_url
        self.results_queue = results_queue
        self.shard_queues = shard_queues
        """Results go to their shard's queue (a command's reply_to): tapped too. Copies go to
        the shared results queue, which every operator replica consumes."""
        self.tap = tap
        self.rng = rng
        self.stale: set[tuple[str, int]] = set()
        self.pending: set[asyncio.Task[None]] = set()
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractRobustChannel | None = None
        self.duplicates = 0
        self.failed = 0
        self.stopped = False

    async def start(self) -> None:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        consume = await self.connection.channel()
        exchange = await consume.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        # A copy of every result the workers publish (routing key = the results queue).
        queue = await consume.declare_queue(self.tap, durable=False, auto_delete=True)
        for routing_key in (self.results_queue, *self.shard_queues):
            await queue.bind(exchange, routing_key=routing_key)
        await queue.consume(self._on_result)

    async def _on_result(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        if self.stopped:
            return
        draw = self.rng.random()
        delay = self.rng.uniform(0, INJECT_DELAY_MAX_S)
        if draw < DUPLICATE_P:
            self._later(delay, message.body, message.message_id, None)
        elif draw < DUPLICATE_P + STALE_P:
            body = json.loads(message.body)
            if self.rng.random() < 0.5:
                body["dispatchId"] = body["dispatchId"] + "-stale"
            else:
                body["attempt"] = int(body["attempt"]) + 1
            raw = json.dumps(body).encode()
            self._later(delay, raw, None, (body["dispatchId"], int(body["attempt"])))

    def _later(
        self, delay: float, body: bytes, message_id: str | None, stale: tuple[str, int] | None
    ) -> None:
        task = asyncio.create_task(self._publish(delay, body, message_id, stale))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _publish(
        self, delay: float, body: bytes, message_id: str | None, stale: tuple[str, int] | None
    ) -> None:
        await asyncio.sleep(delay)  # a late copy: part of the fault schedule
        assert self.channel is not None
        try:
            async with asyncio.timeout(5):
                # The default exchange: straight to the results queue, not back to the tap.
                await self.channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=message_id,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self.results_queue,
                    mandatory=True,
                )
        except Exception:
            self.failed += 1  # the broker is restarting: this copy was not injected
            return
        if stale is None:
            self.duplicates += 1
        else:
            self.stale.add(stale)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for task in list(self.pending):
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)
        if self.connection is not None:
            await self.connection.close()


async def collect_dead_letters(
    amqp_url: str, queue: str, until: Callable[[list[tuple[bytes, str]]], bool], timeout: float
) -> list[tuple[bytes, str]]:
    """Consume the dead-letter queue until ``until`` holds (or ``timeout``); body and reason."""
    got: list[tuple[bytes, str]] = []
    done = asyncio.Event()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            reason = (message.headers or {}).get("x-kubesaga-reason", "")
            got.append((message.body, str(reason)))
            if until(got):
                done.set()

        tag = await q.consume(on_message)
        if until(got):
            done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        await q.cancel(tag)
    return got


def dead_letter_key(body: bytes) -> tuple[str, int]:
    try:
        data = json.loads(body)
        return str(data.get("dispatchId")), int(data.get("attempt", 0))
    except (ValueError, TypeError, AttributeError):
        return "", 0
