"""The broker adapter: one robust connection, a confirming publisher, and consumers.

``aio_pika.connect_robust`` reconnects after a broker restart and restores channels, queues and
consumers. Publishes that fail while the connection is down raise; callers leave the message
they were handling unacked, so the broker redelivers it and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aio_pika
from aio_pika import Message
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPConnectionError, ChannelInvalidStateError, PublishError

from kubesaga.broker import publisher
from kubesaga.broker.consumer import Outcome, Subscription
from kubesaga.broker.topology import (
    DEAD_LETTER_QUEUE,
    RESULTS_QUEUE,
    MismatchHook,
    action_queue,
    declare_exchange,
    declare_queue,
)
from kubesaga.models import Command, Result
from kubesaga.settings import Settings, default_of

log = logging.getLogger(__name__)

T = TypeVar("T")

DeadLetterHook = Callable[[str, str], None]
"""``on_dead_letter(source_queue, reason)``: called after each dead letter, e.g. to count it."""


@dataclass(frozen=True)
class BrokerSettings:
    url: str
    quorum_queues: bool = False
    """Declare action queues (only those, as docs/protocol.md says) as quorum queues."""
    ca_file: str | None = None
    """CA bundle that verifies the broker's certificate, for ``amqps://`` URLs."""
    prefetch: int = default_of("operator_prefetch")
    """How many results the operator processes at once (``Settings.operator_prefetch``)."""
    requeue_delay: float = 1.0
    """Seconds a message waits before a requeue, so a failing message cannot spin."""
    publish_timeout: float = 30.0
    """How long a publish may wait for a reconnect (and retry) before it raises TimeoutError."""
    operation_timeout: float = default_of("amqp_timeout_seconds")
    """Bound on connecting, and on each reconnect attempt (``Settings.amqp_timeout_seconds``):
    without one, an attempt on a connection that went silent waited for ever, so a process whose
    broker was partitioned away never reconnected once the network healed."""
    heartbeat: int = default_of("amqp_heartbeat_seconds")
    """AMQP heartbeat seconds, unless the URL names one (``Settings.amqp_heartbeat_seconds``)."""
    results_queue: str = RESULTS_QUEUE
    dead_letter_queue: str = DEAD_LETTER_QUEUE

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerSettings:
        """The broker part of the one settings object (``KUBESAGA_*``), for operator and workers."""
        return cls(
            url=settings.amqp_url,
            quorum_queues=settings.quorum_queues,
            ca_file=settings.amqp_ca_file,
            prefetch=settings.operator_prefetch,
            results_queue=settings.results_queue,
            dead_letter_queue=settings.dead_letter_queue,
            publish_timeout=3 * settings.amqp_timeout_seconds,
            operation_timeout=settings.amqp_timeout_seconds,
            heartbeat=settings.amqp_heartbeat_seconds,
        )


class Broker:
    """Publishes commands and results with confirms and consumes them; see docs/protocol.md."""

    def __init__(
        self,
        settings: BrokerSettings,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        exchange: AbstractExchange,
        on_dead_letter: DeadLetterHook | None,
        on_queue_mismatch: MismatchHook | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self._channel = channel
        self._exchange = exchange
        self._on_dead_letter = on_dead_letter
        self._on_queue_mismatch = on_queue_mismatch
        self._mismatched: set[str] = set()
        self._declared: set[str] = set()
        self._subscriptions: list[Subscription[Any]] = []
        self._closing = False
        self._connected = True
        connection.close_callbacks.add(self._on_connection_lost)
        connection.reconnect_callbacks.add(self._on_reconnected)

    @property
    def connected(self) -> bool:
        """False from a lost connection until aio-pika has reconnected and restored every
        channel, queue and consumer (its reconnect callbacks); False once closed."""
        return self._connected and not self._closing

    def _on_connection_lost(self, _sender: object, reason: BaseException | None = None) -> None:
        if self._connected and not self._closing:
            log.warning("broker connection lost (%r); reconnecting", reason)
        self._connected = False

    def _on_reconnected(self, _sender: object) -> None:
        log.info("broker connection restored")
        self._connected = True

    @classmethod
    async def connect(
        cls,
        settings: BrokerSettings,
        *,
        on_dead_letter: DeadLetterHook | None = None,
        on_queue_mismatch: MismatchHook | None = None,
    ) -> Broker:
        """Connect, open the confirming publisher channel and declare the shared topology.

        ``on_queue_mismatch(queue, argument)`` is called for each queue found to exist with
        other arguments than ours (it is used as it is; see ``topology.declare_queue``).
        """
        context = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        extra: dict[str, Any] = {}
        if "heartbeat=" not in urlsplit(settings.url).query:
            extra["heartbeat"] = settings.heartbeat
        connection = await aio_pika.connect_robust(
            settings.url, ssl_context=context, timeout=settings.operation_timeout, **extra
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await declare_exchange(channel)
            broker = cls(settings, connection, channel, exchange, on_dead_letter, on_queue_mismatch)
            await broker._declare(settings.dead_letter_queue, quorum=False)
            await broker._declare(settings.results_queue, quorum=False)
        except BaseException:
            await connection.close()
            raise
        return broker

    async def close(self) -> None:
        """Stop consuming, return unfinished messages to their queues, and disconnect."""
        self._closing = True
        await self.stop_consuming()
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.close()
        await self.connection.close()

    async def stop_consuming(self) -> None:
        """Cancel every consumer; messages already delivered keep being processed."""
        for subscription in self._subscriptions:
            await subscription.cancel()

    async def drain(self) -> None:
        """Wait until every delivered message is settled (bound it with ``asyncio.timeout``)."""
        for subscription in self._subscriptions:
            await subscription.drain()

    # -------------------------------------------------------------------------------- topology

    async def declare_action(self, action: str) -> None:
        """Declare the action's queue (idempotent; once per process)."""
        await self._declare(action_queue(action), quorum=self.settings.quorum_queues)

    async def _declare(
        self, name: str, *, quorum: bool, single_active_consumer: bool = False
    ) -> None:
        if name in self._declared:
            return
        await declare_queue(
            self.connection,
            self._channel,
            self._exchange,
            name,
            quorum=quorum,
            report=self._mismatch,
            single_active_consumer=single_active_consumer,
        )
        self._declared.add(name)

    def _mismatch(self, queue: str, argument: str, reply: str) -> None:
        """Say it once per queue and process (the publisher and a consumer both declare)."""
        if queue in self._mismatched:
            return
        self._mismatched.add(queue)
        log.warning(
            "queue %s exists with another %s than kubesaga declares (%s); using it as it is",
            queue,
            argument,
            reply,
            extra={"queue": queue, "argument": argument},
        )
        if self._on_queue_mismatch is not None:
            self._on_queue_mismatch(queue, argument)

    # ------------------------------------------------------------------------------ publishing

    async def publish_command(self, command: Command, reply_to: str | None = None) -> None:
        """Publish to the action's queue (declared first) and wait for the confirm; with
        ``reply_to``, the worker publishes the result to that results queue."""
        queue = action_queue(command.action)
        quorum = self.settings.quorum_queues
        await self._declare(queue, quorum=quorum)
        try:
            await self._publish(lambda: publisher.command_message(command, reply_to), queue)
        except PublishError:
            # Returned unroutable: someone deleted the queue since we declared it.
            self._declared.discard(queue)
            await self._declare(queue, quorum=quorum)
            await self._publish(lambda: publisher.command_message(command, reply_to), queue)

    async def publish_result(self, result: Result, reply_to: str | None = None) -> None:
        """Publish to the command's ``reply_to`` if it had one (check it with
        ``results_queue_of``), else to the results queue, and wait for the confirm."""
        queue = reply_to or self.settings.results_queue
        await self._publish(lambda: publisher.result_message(result), queue)

    def is_results_queue(self, name: str) -> bool:
        """Whether ``name`` is this installation's results queue or one of its shards'
        (``<results queue>.<n>``): the only queues a command's ``reply_to`` may name."""
        base = self.settings.results_queue
        return name == base or (name.startswith(base + ".") and name[len(base) + 1 :].isdigit())

    async def declare_results_queue(self, name: str) -> None:
        """Declare a shard's results queue (single active consumer), so workers can publish to
        it before anyone consumes it."""
        await self._declare(name, quorum=False, single_active_consumer=True)

    async def dead_letter(
        self,
        body: bytes,
        reason: str,
        source_queue: str,
        headers: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a message nobody can process on the dead-letter queue: its body, ``headers`` and
        ``properties`` (``publisher.KEPT_PROPERTIES``) as they were, plus the reason and the
        source queue in two headers."""
        queue = self.settings.dead_letter_queue
        await self._publish(
            lambda: publisher.dead_letter_message(body, reason, source_queue, headers, properties),
            queue,
        )
        if self._on_dead_letter is not None:
            try:
                self._on_dead_letter(source_queue, reason)
            except Exception:
                log.exception("on_dead_letter hook failed")

    async def _publish(self, message: Callable[[], Message], routing_key: str) -> None:
        """Publish with confirm; across a reconnect, wait for the channel and publish again.

        A publish cut by a lost connection may or may not have reached the broker, so the retry
        can duplicate it; the protocol makes duplicates harmless (the dispatch id identifies them).
        """
        attempt = 0
        async with asyncio.timeout(self.settings.publish_timeout):
            while True:
                await self._channel.ready()
                try:
                    await publisher.publish(self._exchange, message(), routing_key)
                    return
                except (AMQPConnectionError, ChannelInvalidStateError) as exc:
                    if self._closing:
                        raise
                    attempt += 1
                    log.warning("publish to %s interrupted (%r); retrying", routing_key, exc)
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))  # let the reconnect start

    # ------------------------------------------------------------------------------- consuming

    async def consume_results(
        self,
        handler: Callable[[Result], Awaitable[Outcome]],
        shard_queue: str | None = None,
        prefetch: int | None = None,
    ) -> Subscription[Result]:
        """Consume the results queue, or a shard's (``declare_results_queue``), for the
        operator, ``prefetch`` results at once (default: the settings'); returns once
        consuming started. ``unsubscribe`` the answer to stop consuming that queue alone."""
        return await self._subscribe(
            [shard_queue or self.settings.results_queue],
            Result.model_validate_json,
            handler,
            prefetch or self.settings.prefetch,
            quorum=False,
            single_active_consumer=shard_queue is not None,
        )

    async def unsubscribe(self, subscription: Subscription[Any], grace: float) -> None:
        """Stop one subscription: no new deliveries, ``grace`` seconds for those in flight,
        then its channel is closed and whatever is still unacked goes back to its queue."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        await subscription.cancel()
        try:
            async with asyncio.timeout(grace):
                await subscription.drain()
        except TimeoutError:
            pass
        await subscription.close()

    async def consume_commands(
        self,
        actions: Iterable[str],
        handler: Callable[..., Awaitable[Outcome]],
        prefetch: int,
        *,
        reply_to: bool = False,
    ) -> None:
        """Consume the actions' queues (for workers), declaring them; returns once consuming.

        With ``reply_to`` the handler is called as ``handler(command, reply_to)``."""
        queues = [action_queue(action) for action in actions]
        await self._subscribe(
            queues,
            Command.model_validate_json,
            handler,
            prefetch,
            quorum=self.settings.quorum_queues,
            misplaced=_misplaced_command,
            reply_to=reply_to,
        )

    async def _subscribe(
        self,
        queues: list[str],
        parse: Callable[[bytes], T],
        handler: Callable[..., Awaitable[Outcome]],
        prefetch: int,
        *,
        quorum: bool,
        misplaced: Callable[[str, T], str | None] | None = None,
        reply_to: bool = False,
        single_active_consumer: bool = False,
    ) -> Subscription[T]:
        channel = await self.connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        subscription = Subscription(
            channel,
            parse=parse,
            handler=handler,
            dead_letter=self.dead_letter,
            requeue_delay=self.settings.requeue_delay,
            misplaced=misplaced,
            reply_to=reply_to,
        )
        self._subscriptions.append(subscription)
        exchange = await declare_exchange(channel)
        for name in queues:
            queue = await declare_queue(
                self.connection,
                channel,
                exchange,
                name,
                quorum=quorum,
                report=self._mismatch,
                single_active_consumer=single_active_consumer,
            )
            await subscription.consume(queue)
        return subscription


def _misplaced_command(queue: str, command: Command) -> str | None:
    """A command is run only from its own action's queue: one published (by mistake or by a
    worker allowed to publish to the exchange) onto another action's queue is not this queue's
    consumer's to run, even when the same worker happens to serve both actions."""
    try:
        expected = action_queue(command.action)
    except ValueError as error:
        return str(error)
    if expected == queue:
        return None
    return f"command for action {command.action!r} arrived on queue {queue!r}, not {expected!r}"
