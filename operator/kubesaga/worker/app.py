"""``Worker``: explicit registration of step and compensation handlers, and the serving loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from kubesaga.models import Command, CommandKind, Result, limits
from kubesaga.settings import Settings
from kubesaga.worker.execute import Handler, Registration, execute

if TYPE_CHECKING:
    from kubesaga.broker import BrokerSettings
    from kubesaga.health import Health

log = logging.getLogger("kubesaga.worker")

H = TypeVar("H", bound=Handler)


class Worker:
    """A set of handlers served together, e.g. by one Deployment.

    Registration is explicit and local to this object (no global registry)::

        worker = Worker("orders")

        @worker.step("orders.create")
        async def create(ctx: StepContext) -> dict[str, Any]:
            return {"order_id": ...}

        @worker.compensation("orders.delete")
        def delete(ctx: StepContext) -> None:  # sync handlers run in a thread
            ...

    and served with ``kubesaga worker module:worker`` or ``await worker.run()``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._registrations: dict[str, Registration] = {}

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, actions={self.actions!r})"

    @property
    def actions(self) -> list[str]:
        """Registered action and compensation names, in registration order."""
        return list(self._registrations)

    def _registration(self, action: str) -> Registration | None:
        """For the testing kit (not public: ``Registration`` is an internal type)."""
        return self._registrations.get(action)

    def step(self, action: str) -> Callable[[H], H]:
        """Register the decorated function as the handler of a step's action."""
        return self._register(action, CommandKind.EXECUTE)

    def compensation(self, action: str) -> Callable[[H], H]:
        """Register the decorated function as a compensation (it undoes a step)."""
        return self._register(action, CommandKind.COMPENSATE)

    def _register(self, action: str, kind: CommandKind) -> Callable[[H], H]:
        limits.check_action(action)  # a name RabbitMQ or the CRD would refuse: ValueError now

        def decorate(handler: H) -> H:
            if not callable(handler):
                raise TypeError(f"handler for {action!r} must be callable, not {handler!r}")
            existing = self._registrations.get(action)
            if existing is not None:
                raise ValueError(
                    f"action {action!r} is already registered on worker {self.name!r} "
                    f"(by {_describe(existing.handler)}); each action has one handler"
                )
            self._registrations[action] = Registration(action, kind, handler)
            return handler

        return decorate

    async def _execute(self, command: Command) -> Result:
        """Run the command's handler here, without a broker (``kubesaga.worker.testing``)."""
        registration = self._registrations.get(command.action)
        if registration is None:
            raise LookupError(
                f"worker {self.name!r} has no handler for action {command.action!r}; "
                f"registered: {', '.join(self.actions) or 'none'}"
            )
        return await execute(registration, command, worker=self.name)

    async def run(
        self, settings: Settings | None = None, *, stop: asyncio.Event | None = None
    ) -> None:
        """Serve commands until ``stop`` is set (or forever), then shut down gracefully.

        ``settings`` default to the environment (``KUBESAGA_*``), exactly as ``kubesaga worker``
        reads them, so a worker started from your own ``main()`` behaves like the one the chart
        runs: the broker (``amqp_url``, queues), ``worker_concurrency`` commands at once,
        ``worker_grace_seconds`` for running handlers on stop, and /livez and /readyz on
        ``health_port`` when it is set.

        Declares every registered action's queue. Each result is published (and confirmed)
        before its command is acked. On stop, consuming ends, running handlers get the grace
        period to finish, and the commands of those still running go back to their queues.
        Cancelling ``run`` does the same without the grace period. Signals are the caller's
        business (``kubesaga worker`` sets ``stop`` on SIGTERM).
        """
        from kubesaga.broker import BrokerSettings
        from kubesaga.health import Health, serve

        settings = Settings() if settings is None else settings
        health = Health()
        health.start()
        server = None
        try:
            if settings.health_port:
                server = await serve(health, settings.metrics_host, settings.health_port)
            await self._serve(
                BrokerSettings.from_settings(settings),
                concurrency=settings.worker_concurrency,
                grace=settings.worker_grace_seconds,
                stop=stop,
                health=health,
            )
        finally:
            if server is not None:
                await server.cleanup()
            await health.close()

    async def _serve(
        self,
        broker_settings: BrokerSettings,
        *,
        concurrency: int,
        grace: float,
        stop: asyncio.Event | None = None,
        health: Health | None = None,
    ) -> None:
        """``run`` on broker settings of the caller's (tests tune requeue delays with them).

        The broker adapter (aio-pika) is imported here, not at the top: importing the SDK, as
        every handler module and handler test does, stays free of it.
        """
        from kubesaga.broker import Broker
        from kubesaga.worker.runner import CommandRunner

        if not self._registrations:
            raise RuntimeError(f"worker {self.name!r} has no handlers registered")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        broker = await Broker.connect(broker_settings)
        executor = ThreadPoolExecutor(concurrency, thread_name_prefix=f"kubesaga-{self.name}")
        consuming = False
        if health is not None:
            health.add_check("broker", lambda: broker.connected)
            health.add_check("consumers", lambda: consuming)
        try:
            runner = CommandRunner(
                dict(self._registrations), broker, worker=self.name, executor=executor
            )
            await broker.consume_commands(self.actions, runner, prefetch=concurrency, reply_to=True)
            _raise_if_cancel_was_swallowed()
            consuming = True
            log.info(
                "worker %s serving %s (concurrency %d)",
                self.name,
                ", ".join(self.actions),
                concurrency,
                extra={"worker": self.name},
            )
            await (stop or asyncio.Event()).wait()
            log.info(
                "worker %s stopping; waiting up to %ss for running handlers",
                self.name,
                grace,
                extra={"worker": self.name},
            )
            consuming = False
            await broker.stop_consuming()
            try:
                async with asyncio.timeout(grace):
                    await broker.drain()
            except TimeoutError:
                log.warning(
                    "grace period over; unfinished commands go back to their queues",
                    extra={"worker": self.name},
                )
        finally:
            if health is not None:
                health.remove_check("broker")
                health.remove_check("consumers")
            await broker.close()
            executor.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped", self.name, extra={"worker": self.name})


def _raise_if_cancel_was_swallowed() -> None:
    """Honour a ``cancel()`` that arrived while aio-pika was setting up and that it swallowed.

    Cancelling ``run`` while its consumers were still being declared (a test teardown did, with
    the first queue already delivering) could end in aio-pika's channel handling without the
    ``CancelledError`` reaching us: ``run`` then went on to wait for ``stop`` for ever. The
    task still counts the request (``Task.cancelling``), so it is acted on here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _describe(handler: Handler) -> str:
    module = getattr(handler, "__module__", None) or "?"
    name = getattr(handler, "__qualname__", None) or repr(handler)
    return f"{module}.{name}"
