"""``Worker``: explicit registration of step and compensation handlers, and the serving loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from kubesaga.broker import Broker, BrokerSettings, action_queue
from kubesaga.health import Health
from kubesaga.models import Command, CommandKind, Result
from kubesaga.worker.execute import Handler, Registration, execute
from kubesaga.worker.runner import CommandRunner

log = logging.getLogger("kubesaga.worker")

H = TypeVar("H", bound=Handler)

DEFAULT_CONCURRENCY = 16
DEFAULT_GRACE_SECONDS = 30.0


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

    def registration(self, action: str) -> Registration | None:
        return self._registrations.get(action)

    def step(self, action: str) -> Callable[[H], H]:
        """Register the decorated function as the handler of a step's action."""
        return self._register(action, CommandKind.EXECUTE)

    def compensation(self, action: str) -> Callable[[H], H]:
        """Register the decorated function as a compensation (it undoes a step)."""
        return self._register(action, CommandKind.COMPENSATE)

    def _register(self, action: str, kind: CommandKind) -> Callable[[H], H]:
        action_queue(action)  # raises ValueError on a name RabbitMQ or the CRD would refuse

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

    async def execute(self, command: Command) -> Result:
        """Run the command's handler here, without a broker, and return its ``Result``."""
        registration = self._registrations.get(command.action)
        if registration is None:
            raise LookupError(
                f"worker {self.name!r} has no handler for action {command.action!r}; "
                f"registered: {', '.join(self.actions) or 'none'}"
            )
        return await execute(registration, command, worker=self.name)

    async def run(
        self,
        settings: BrokerSettings,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        stop: asyncio.Event | None = None,
        grace: float = DEFAULT_GRACE_SECONDS,
        health: Health | None = None,
    ) -> None:
        """Serve commands until ``stop`` is set (or forever), then shut down gracefully.

        Declares every registered action's queue and processes up to ``concurrency`` commands at
        once. Each result is published (and confirmed) before its command is acked. On stop,
        consuming ends, running handlers get ``grace`` seconds to finish, and the commands of
        those still running go back to their queues. Cancelling ``run`` does the same without
        the grace period. With ``health``, readiness also requires the broker connection and
        the consumers to be up (``kubesaga worker`` serves it to the kubelet's probes).
        """
        if not self._registrations:
            raise RuntimeError(f"worker {self.name!r} has no handlers registered")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        broker = await Broker.connect(settings)
        executor = ThreadPoolExecutor(concurrency, thread_name_prefix=f"kubesaga-{self.name}")
        consuming = False
        if health is not None:
            health.add_check("broker", lambda: broker.connected)
            health.add_check("consumers", lambda: consuming)
        try:
            runner = CommandRunner(
                dict(self._registrations), broker, worker=self.name, executor=executor
            )
            await broker.consume_commands(self.actions, runner, prefetch=concurrency)
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


def _describe(handler: Handler) -> str:
    module = getattr(handler, "__module__", None) or "?"
    name = getattr(handler, "__qualname__", None) or repr(handler)
    return f"{module}.{name}"
