"""Running the operator and workers for tests: in-process tasks, or real processes to kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika

from kubesaga import Worker
from kubesaga.broker import BrokerSettings
from kubesaga.operator import run_operator
from kubesaga.operator.main import READY_LINE
from kubesaga.settings import Settings

READY_TIMEOUT_S = 60


def unique(prefix: str) -> str:
    """A name no other test uses (queues, actions)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def broker_settings(settings: Settings) -> BrokerSettings:
    """What a worker needs to talk to the same queues as the operator under test."""
    return BrokerSettings.from_settings(settings)


class OperatorThread(threading.Thread):
    """The thread running an operator; ``loop`` is its event loop once it started."""

    loop: asyncio.AbstractEventLoop


@contextlib.asynccontextmanager
async def operator_task(settings: Settings) -> AsyncIterator[OperatorThread]:
    """The operator in a thread with its own event loop; stopped on exit.

    Its own loop, as in a real process: the operator's shutdown must not touch the test's
    tasks, and the test sees exactly what a process would (a crash on stop included).
    """
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["stop"], box["ready"] = asyncio.Event(), asyncio.Event()
        started.set()
        await run_operator(settings, stop=box["stop"], ready=box["ready"])

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as error:
            box["error"] = error
        finally:
            started.set()

    thread = OperatorThread(target=target, name="kubesaga-operator", daemon=True)
    thread.start()
    await asyncio.to_thread(started.wait, READY_TIMEOUT_S)
    if "error" in box or "loop" not in box:
        raise RuntimeError(f"operator failed to start: {box.get('error')!r}")
    thread.loop = box["loop"]
    ready = asyncio.run_coroutine_threadsafe(box["ready"].wait(), box["loop"])
    try:
        await asyncio.wait_for(asyncio.wrap_future(ready), READY_TIMEOUT_S)
    except TimeoutError:
        raise RuntimeError(f"operator did not become ready: {box.get('error')!r}") from None
    try:
        yield thread
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        await asyncio.to_thread(thread.join, 60)
        if "error" in box:
            raise RuntimeError("the operator crashed") from box["error"]


@contextlib.asynccontextmanager
async def worker_task(
    worker: Worker, settings: Settings, concurrency: int = 16
) -> AsyncIterator[asyncio.Task[None]]:
    """A worker as a task; stopped gracefully on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        worker._serve(broker_settings(settings), concurrency=concurrency, grace=5, stop=stop)
    )
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def free_port() -> int:
    """A loopback port nobody listens on right now (for metrics servers of tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def operator_env(settings: Settings) -> dict[str, str]:
    """The environment a ``kubesaga operator`` (or worker) process reads ``settings`` from."""
    env = dict(os.environ)
    env.update(
        KUBECONFIG=settings.kubeconfig or env.get("KUBECONFIG", ""),
        KUBESAGA_AMQP_URL=settings.amqp_url,
        KUBESAGA_NAMESPACES=",".join(settings.namespaces),
        KUBESAGA_RESULTS_QUEUE=settings.results_queue,
        KUBESAGA_DEAD_LETTER_QUEUE=settings.dead_letter_queue,
        KUBESAGA_METRICS_PORT=str(settings.metrics_port),
        KUBESAGA_REDELIVER_AFTER_SECONDS=str(settings.redeliver_after_seconds),
        KUBESAGA_EVENTS=settings.events,
        KUBESAGA_LOG_LEVEL="INFO",
        KUBESAGA_AMQP_HEARTBEAT_SECONDS=str(settings.amqp_heartbeat_seconds),
        KUBESAGA_AMQP_TIMEOUT_SECONDS=str(settings.amqp_timeout_seconds),
        KUBESAGA_KUBE_REQUEST_TIMEOUT_SECONDS=str(settings.kube_request_timeout_seconds),
        KUBESAGA_KUBE_WATCH_IDLE_SECONDS=str(settings.kube_watch_idle_seconds),
        KUBESAGA_POD_NAMESPACE=settings.pod_namespace,
        KUBESAGA_SHARDS=str(settings.shards),
        KUBESAGA_SHARD_LEASE_SECONDS=str(settings.shard_lease_seconds),
        KUBESAGA_SHARD_RENEW_SECONDS=str(settings.shard_renew_seconds),
        KUBESAGA_SHARD_LEASE_PREFIX=settings.shard_lease_prefix,
    )
    return env


@dataclass
class OperatorProcess:
    """``python -m kubesaga operator`` as a real process, for crash tests."""

    settings: Settings
    proc: asyncio.subprocess.Process | None = None
    log: list[str] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kubesaga",
            "operator",
            env=operator_env(self.settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready = asyncio.get_running_loop().create_future()
        self.pump = asyncio.create_task(self._read(ready))
        await asyncio.wait_for(ready, READY_TIMEOUT_S)

    async def _read(self, ready: asyncio.Future[None]) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if READY_LINE in line and not ready.done():
                ready.set_result(None)
        if not ready.done():
            ready.set_exception(RuntimeError("operator exited:\n" + "\n".join(self.log[-30:])))

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no acks, no goodbyes."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.pump is not None:
            await self.pump


async def next_dead_letter(
    amqp_url: str, queue: str, timeout: float = 30
) -> aio_pika.abc.AbstractIncomingMessage:
    """Wait (consuming, not polling) for the next message on a dead-letter queue."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)
        async with asyncio.timeout(timeout), q.iterator() as messages:
            async for message in messages:
                await message.ack()
                return message
    raise AssertionError("dead-letter queue closed")


async def cli(settings: Settings, kubeconfig: str, *args: str, timeout: float = 120) -> list[str]:
    """``kubesaga ARGS`` as a user runs it, against the platform; its stdout lines (fails the
    test on an error, with its stderr)."""
    env = operator_env(settings) | {"KUBECONFIG": kubeconfig}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubesaga",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()
