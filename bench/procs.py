"""Operator and worker processes for a bench phase, started and stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.platform import REPO_ROOT
from bench.report import parse_prometheus
from kubesaga.broker.topology import ACTION_QUEUE_PREFIX
from kubesaga.settings import Settings

READY_LINE = "kubesaga operator ready"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pump, 5)
        return self.process.returncode


async def _pump(proc: Proc, stream: asyncio.StreamReader, ready_text: str | None) -> None:
    with proc.log_path.open("ab") as log:
        while True:
            line = await stream.readline()
            if not line:
                return
            log.write(line)
            if ready_text is not None and ready_text.encode() in line:
                proc.ready.set()
                log.flush()


async def spawn(
    name: str,
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    ready_text: str | None = None,
) -> Proc:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=str(REPO_ROOT),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        limit=1 << 20,
    )
    proc = Proc(name, process, log_path)
    assert process.stdout is not None
    proc.pump = asyncio.create_task(_pump(proc, process.stdout, ready_text))
    if ready_text is None:
        proc.ready.set()
    return proc


async def wait_ready(proc: Proc, timeout: float = READY_TIMEOUT_S) -> None:
    done = asyncio.create_task(proc.process.wait())
    ready = asyncio.create_task(proc.ready.wait())
    try:
        await asyncio.wait({done, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        done.cancel()
        ready.cancel()
    if not proc.ready.is_set():
        tail = proc.log_path.read_text(errors="replace")[-2000:] if proc.log_path.exists() else ""
        await proc.stop(5)
        raise RuntimeError(f"{proc.name} did not become ready in {timeout}s; log tail:\n{tail}")


@dataclass
class PhaseConfig:
    """What one phase's operator and workers share: namespace, queues, action."""

    namespace: str
    action: str
    results_queue: str
    dead_letter_queue: str
    work_dir: Path
    events: str = Settings.model_fields["events"].default
    log_level: str = "INFO"
    metrics_port: int = field(default_factory=free_port)

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KUBESAGA_RESULTS_QUEUE=self.results_queue,
            KUBESAGA_DEAD_LETTER_QUEUE=self.dead_letter_queue,
            KUBESAGA_LOG_LEVEL=self.log_level,
            PYTHONUNBUFFERED="1",
        )
        return env


async def start_operator(
    cfg: PhaseConfig,
    extra_args: list[str] | None = None,
    *,
    metrics_port: int | None = None,
    name: str = "operator",
) -> Proc:
    """An operator on the phase's namespace; its shard Leases live there too."""
    env = cfg.base_env()
    env.update(
        KUBESAGA_NAMESPACES=cfg.namespace,
        KUBESAGA_POD_NAMESPACE=cfg.namespace,
        KUBESAGA_METRICS_PORT=str(metrics_port or cfg.metrics_port),
        KUBESAGA_METRICS_HOST="127.0.0.1",
        KUBESAGA_EVENTS=cfg.events,
    )
    args = [*(extra_args or []), "-m", "kubesaga", "operator"]
    proc = await spawn(name, args, env, cfg.work_dir / f"{name}.log", READY_LINE)
    await wait_ready(proc)
    return proc


async def start_workers(
    cfg: PhaseConfig, count: int, concurrency: int, amqp_url: str
) -> list[Proc]:
    """Start ``count`` no-op workers; ready once the action queue has that many consumers."""
    procs = []
    for index in range(count):
        env = cfg.base_env()
        env.update(
            BENCH_ACTION=cfg.action,
            BENCH_TIMINGS_FILE=str(cfg.work_dir / "timings"),
        )
        args = [
            "-m",
            "kubesaga",
            "worker",
            "bench.noop_worker:worker",
            "--app-dir",
            str(REPO_ROOT),
            "--concurrency",
            str(concurrency),
        ]
        procs.append(
            await spawn(f"worker-{index}", args, env, cfg.work_dir / f"worker-{index}.log")
        )
    await wait_consumers(amqp_url, ACTION_QUEUE_PREFIX + cfg.action, count, procs)
    return procs


async def wait_consumers(
    amqp_url: str, queue: str, count: int, procs: list[Proc], timeout: float = READY_TIMEOUT_S
) -> None:
    """Poll the queue's consumer count (passive declare) until ``count`` consumers are on it."""
    import aio_pika

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    connection = await aio_pika.connect(amqp_url)
    try:
        while loop.time() < deadline:
            for proc in procs:
                if proc.process.returncode is not None:
                    tail = proc.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{proc.name} exited early; log tail:\n{tail}")
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                consumers = declared.declaration_result.consumer_count or 0
            except aio_pika.exceptions.ChannelClosed:
                consumers = 0  # not declared yet
            finally:
                if not channel.is_closed:
                    await channel.close()
            if consumers >= count:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    raise RuntimeError(f"{count} workers did not start consuming {queue} within {timeout}s")


async def scrape(
    session: aiohttp.ClientSession, port: int
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    async with session.get(
        f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=10)
    ) as response:
        return parse_prometheus(await response.text())


async def delete_queues(amqp_url: str, names: list[str]) -> None:
    """Remove a phase's queues from the broker (best effort)."""
    import aio_pika

    try:
        connection = await aio_pika.connect(amqp_url)
    except Exception:
        return
    try:
        for name in names:
            try:
                channel = await connection.channel()
                await channel.queue_delete(name)
                await channel.close()
            except Exception:
                continue
    finally:
        await connection.close()
