"""SIGTERM when the broker has gone away: `kubesaga operator` and `kubesaga worker` stop within
their grace period, and a second signal stops them at once (issue 10, defect 3).

The broker is reached through a ``TcpProxy``; closing it drops the connections and refuses new
ones, which is what a broker that went away looks like to the processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubesaga import StepContext, Worker
from kubesaga.broker import Broker, BrokerSettings
from kubesaga.cli.worker_cmd import CLOSE_SECONDS
from kubesaga.models import Command, CommandKind, SagaRef
from kubesaga.operator.main import READY_LINE
from kubesaga.settings import Settings
from tests.faults.platform import amqp_address, proxied_amqp_url
from tests.faults.proxy import TcpProxy
from tests.integration.harness import operator_env, unique

pytestmark = pytest.mark.integration

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_S = 60
AT_ONCE_S = 5
""""At once": a signal handler runs, the process exits; generous for a loaded 2-core machine."""
OPERATOR_GRACE_S = 8
KOPF_SECOND_SIGNAL = re.compile(r"\bInvalidStateError\b")
"""asyncio's ``InvalidStateError: invalid state``: what kopf's own signal handlers log on a second
signal (``Future.set_result`` twice) if they were left in place. Not aio-pika's
``ChannelInvalidStateError``, which a robust channel logs whenever the connection is lost (it tries
to reopen before the transport is back): a slow test process gives the operator time to notice
the broker went away before the second signal, and a plain substring check failed on that (CI)."""

ACTION = os.environ.get("KUBESAGA_TEST_SHUTDOWN_ACTION", "test.shutdown")
hanging = Worker("hanging")


@hanging.step(ACTION)
async def never_returns(ctx: StepContext) -> dict[str, Any]:
    print("started", flush=True)
    await asyncio.Event().wait()
    return {}


@dataclass
class Process:
    """A `kubesaga` subprocess whose stderr is collected line by line."""

    proc: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)
    ready: asyncio.Future[None] | None = None
    logged: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, args: list[str], env: dict[str, str], ready_text: str) -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kubesaga",
            *args,
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        process = cls(proc, ready=asyncio.get_running_loop().create_future())
        pump = asyncio.create_task(process._pump(ready_text))
        try:
            await asyncio.wait_for(asyncio.shield(process.ready), START_S)  # type: ignore[arg-type]
        except BaseException:
            proc.kill()
            await proc.wait()
            pump.cancel()
            raise
        return process

    async def _pump(self, ready_text: str) -> None:
        assert self.proc.stderr is not None and self.ready is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            self.logged.set()
            if ready_text in line and not self.ready.done():
                self.ready.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("exited:\n" + "\n".join(self.log[-30:])))

    async def line_containing(self, text: str) -> str:
        """The first log line containing ``text``, waiting for it if need be."""
        async with asyncio.timeout(START_S):
            while True:
                self.logged.clear()
                for line in self.log:
                    if text in line:
                        return line
                await self.logged.wait()

    async def exit_code_within(self, seconds: float) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), seconds)
        except TimeoutError:
            tail = "\n".join(self.log[-15:])
            raise AssertionError(f"still running {seconds}s later; log tail:\n{tail}") from None

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def through_proxy(amqp_url: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    proxy = TcpProxy(*amqp_address(amqp_url))
    port = await proxy.start()
    try:
        yield proxied_amqp_url(amqp_url, port, reconnect_interval=0.1), proxy
    finally:
        await proxy.close()


def worker_env(url: str, settings: BrokerSettings, action: str) -> dict[str, str]:
    return {
        **os.environ,
        "KUBESAGA_AMQP_URL": url,
        "KUBESAGA_RESULTS_QUEUE": settings.results_queue,
        "KUBESAGA_DEAD_LETTER_QUEUE": settings.dead_letter_queue,
        "KUBESAGA_TEST_SHUTDOWN_ACTION": action,
    }


async def start_worker(url: str, settings: BrokerSettings, action: str, grace: float) -> Process:
    return await Process.start(
        ["worker", "tests.integration.test_shutdown:hanging", f"--grace={grace}"],
        worker_env(url, settings, action),
        "worker hanging serving",
    )


async def test_worker_stops_within_its_grace_period_after_the_broker_went_away(
    amqp_url: str, settings: BrokerSettings, broker: Broker
) -> None:
    """A handler outlives the grace period; its command cannot go back to a broker that is gone."""
    grace = 1.0
    action = unique("test.shutdown")
    await broker.declare_action(action)
    async with through_proxy(amqp_url) as (url, proxy):
        worker = await start_worker(url, settings, action, grace)
        try:
            await publish_and_wait_started(broker, worker, action)
            await proxy.close()
            worker.proc.send_signal(signal.SIGTERM)
            assert await worker.exit_code_within(grace + CLOSE_SECONDS + AT_ONCE_S) == 0
        finally:
            await worker.kill()


async def publish_and_wait_started(broker: Broker, worker: Process, action: str) -> None:
    await broker.publish_command(
        Command(
            dispatch_id=f"uid-1/s/execute/1/{unique('x')}",
            saga=SagaRef(namespace="shop", name="order-1", uid="uid-1"),
            step="s",
            kind=CommandKind.EXECUTE,
            action=action,
            attempt=1,
        )
    )
    assert worker.proc.stdout is not None
    async with asyncio.timeout(START_S):
        assert (await worker.proc.stdout.readline()).strip() == b"started"


async def test_worker_stops_at_once_on_a_second_signal(
    amqp_url: str, settings: BrokerSettings, broker: Broker
) -> None:
    """A handler that never returns holds a graceful stop for the whole (long) grace period."""
    action = unique("test.shutdown")
    await broker.declare_action(action)
    async with through_proxy(amqp_url) as (url, proxy):
        worker = await start_worker(url, settings, action, grace=600)
        try:
            await publish_and_wait_started(broker, worker, action)
            await proxy.close()
            worker.proc.send_signal(signal.SIGTERM)
            await worker.line_containing("SIGTERM received")  # signals sent at once may reorder
            worker.proc.send_signal(signal.SIGINT)
            assert await worker.exit_code_within(AT_ONCE_S) == 128 + signal.SIGINT
        finally:
            await worker.kill()


async def start_operator(settings: Settings, url: str) -> Process:
    env = operator_env(settings.model_copy(update={"amqp_url": url}))
    return await Process.start(["operator", f"--grace={OPERATOR_GRACE_S}"], env, READY_LINE)


@pytest.mark.usefixtures("saga_crd")
async def test_operator_stops_within_its_grace_period_after_the_broker_went_away(
    amqp_url: str, operator_settings: Settings
) -> None:
    async with through_proxy(amqp_url) as (url, proxy):
        operator = await start_operator(operator_settings, url)
        try:
            await proxy.close()
            operator.proc.send_signal(signal.SIGTERM)
            assert await operator.exit_code_within(OPERATOR_GRACE_S + AT_ONCE_S) == 0
        finally:
            await operator.kill()


@pytest.mark.usefixtures("saga_crd")
async def test_operator_stops_at_once_on_a_second_signal(
    amqp_url: str, operator_settings: Settings
) -> None:
    async with through_proxy(amqp_url) as (url, proxy):
        operator = await start_operator(operator_settings, url)
        try:
            await proxy.close()
            operator.proc.send_signal(signal.SIGTERM)
            await operator.line_containing("SIGTERM received")  # signals sent at once may reorder
            operator.proc.send_signal(signal.SIGINT)
            assert await operator.exit_code_within(AT_ONCE_S) == 128 + signal.SIGINT
        finally:
            await operator.kill()
    kopf_handlers = [line for line in operator.log if KOPF_SECOND_SIGNAL.search(line)]
    assert not kopf_handlers, "\n".join(operator.log)
