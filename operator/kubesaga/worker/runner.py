"""Serving commands from the broker: one result per dispatch id, published before the ack."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import Executor

from kubesaga.broker import Broker, Outcome
from kubesaga.models import Command, Result
from kubesaga.worker.execute import Registration, execute, log_extra

log = logging.getLogger("kubesaga.worker")

RECENT_RESULTS = 256
"""Results kept after publishing, so a redelivery (e.g. after a lost ack) reuses them."""


class CommandRunner:
    """The consumer's handler: runs each command once per process, however often it arrives.

    A redelivery of a dispatch id that is still running waits for the running handler and
    publishes its result, instead of running the handler a second time. A redelivery of one that
    finished recently (its publish or ack was lost) republishes the remembered result.
    """

    def __init__(
        self,
        registrations: dict[str, Registration],
        broker: Broker,
        *,
        worker: str,
        executor: Executor | None = None,
    ) -> None:
        self._registrations = registrations
        self._broker = broker
        self._worker = worker
        self._executor = executor
        self._running: dict[str, asyncio.Task[Result]] = {}
        self._waiters: dict[str, int] = {}
        self._recent: OrderedDict[str, Result] = OrderedDict()

    async def __call__(self, command: Command, reply_to: str | None = None) -> Outcome:
        """Run ``command`` (once) and publish its result to ``reply_to``, the results queue
        the command names (a shard's), or to the installation's results queue without one."""
        registration = self._registrations.get(command.action)
        if registration is None:
            return Outcome.dead_letter(
                f"worker {self._worker!r} has no handler for action {command.action!r}"
            )
        if reply_to is not None and not self._broker.is_results_queue(reply_to):
            base = self._broker.settings.results_queue
            return Outcome.dead_letter(
                f"reply_to {reply_to!r} is not a results queue of this installation "
                f"({base!r} or {base}.<n>)"
            )
        result = await self._result(registration, command)
        await self._broker.publish_result(result, reply_to)  # raising: the message is requeued
        log.debug("result published", extra=log_extra(command, self._worker))
        return Outcome.ack()

    async def _result(self, registration: Registration, command: Command) -> Result:
        key = command.dispatch_id
        if (known := self._recent.get(key)) is not None:
            log.info(
                "redelivered command already ran; reusing its result",
                extra=log_extra(command, self._worker),
            )
            return known
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(
                execute(registration, command, worker=self._worker, executor=self._executor)
            )
            self._running[key] = task
            self._waiters[key] = 0
            task.add_done_callback(lambda t: self._finished(key, t))
        else:
            log.info(
                "command is already running here; waiting for it",
                extra=log_extra(command, self._worker),
            )
        self._waiters[key] += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._waiters.get(key) == 1:  # the last delivery waiting for it gave up
                task.cancel()
            raise
        finally:
            if key in self._waiters:  # not yet cleared by _finished
                self._waiters[key] -= 1

    def _finished(self, key: str, task: asyncio.Task[Result]) -> None:
        self._running.pop(key, None)
        self._waiters.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        self._recent[key] = task.result()
        while len(self._recent) > RECENT_RESULTS:
            self._recent.popitem(last=False)
