"""Operator and worker processes for the chaos suite: start, SIGKILL, restart, stop.

Built on tests/integration/harness.py (its environment and port helpers); here every process
also has a metrics port (scraped before a kill, so the figures survive it) and
workers are real ``kubesaga worker`` processes, since only a process can be killed mid-step.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from kubesaga.operator.main import READY_LINE
from kubesaga.settings import Settings
from tests.integration.harness import operator_env

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60
WORKER_READY_MARK = "serving"


@dataclass
class Proc:
    """A child process whose stderr is pumped into ``log``; ready once a line shows ``mark``."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    mark: str
    proc: asyncio.subprocess.Process | None = None
    log: list[str] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=dict(self.env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.starts += 1
        ready = asyncio.get_running_loop().create_future()
        self.pump = asyncio.create_task(self._read(self.proc, ready))
        try:
            await asyncio.wait_for(ready, READY_TIMEOUT_S)
        except BaseException:
            await self.kill()
            raise

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[None]) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if len(self.log) > 2000:
                del self.log[:1000]
            if self.mark in line and not ready.done():
                ready.set_result(None)
        if not ready.done():
            ready.set_exception(RuntimeError(f"{self.name} exited:\n" + "\n".join(self.log[-30:])))

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no acks, no goodbyes."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self.pump is not None:
            await self.pump

    async def stop(self, grace: float = 30) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.pump is not None:
            await self.pump


def operator_proc(name: str, settings: Settings, metrics_port: int) -> Proc:
    env = operator_env(settings)
    env.update(KUBESAGA_METRICS_PORT=str(metrics_port), KUBESAGA_METRICS_HOST="127.0.0.1")
    return Proc(name, [sys.executable, "-m", "kubesaga", "operator"], env, READY_LINE)


def worker_proc(
    name: str, settings: Settings, prefix: str, ledger_dir: Path, concurrency: int
) -> Proc:
    env = operator_env(settings)
    env.update(KUBESAGA_CHAOS_PREFIX=prefix, KUBESAGA_CHAOS_LEDGER_DIR=str(ledger_dir))
    argv = [
        sys.executable,
        "-m",
        "kubesaga",
        "worker",
        "tests.chaos.chaos_worker:worker",
        "--app-dir",
        str(REPO_ROOT),
        "--concurrency",
        str(concurrency),
        "--grace",
        "5",
    ]
    return Proc(name, argv, env, WORKER_READY_MARK)


async def scrape(port: int, timeout: float = 5) -> dict[str, float]:
    """``/metrics`` as ``{"name{label=value}": value}``; empty when it cannot be read."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
