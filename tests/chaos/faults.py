"""The processes under a chaos run and the faults done to them and around them.

``Chaos`` owns two operator replicas and the worker processes, and every fault: SIGKILLs of
operators and workers, broker restarts and control-plane restarts (``tests/faults/platform``),
and network faults on the operators' connections through two proxies (``tests/faults/proxy``):
one to the apiserver and one to the broker, while workers keep a direct connection. Each
network or platform fault is recorded as a ``Window`` for the figures.

The fault *schedule* uses timers (that is the scenario); every wait for an outcome is on a watch,
a consumer or a process's log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from kubesaga.settings import Settings
from tests.chaos.audit import open_runs
from tests.chaos.figures import Figures, Timeline, Window
from tests.chaos.procs import Proc, operator_proc, scrape, worker_proc
from tests.faults.platform import Part, restart
from tests.faults.proxy import Direction, TcpProxy
from tests.integration.harness import free_port

WORKERS = 3
WORKER_CONCURRENCY = 8
PROBE_EVERY_S = 0.5
PROBE_TIMEOUT_S = 3.0

Schedule = Callable[["Chaos"], Coroutine[Any, Any, None]]


class Chaos:
    """The processes under test, the proxies in front of the operators, and the faults."""

    def __init__(
        self,
        operator_settings: Settings,
        worker_settings: Settings,
        prefix: str,
        ledger: Path,
        figures: Figures,
        timeline: Timeline,
        rng: random.Random,
        window: float,
        scale: float = 1.0,
        api_proxy: TcpProxy | None = None,
        broker_proxy: TcpProxy | None = None,
        replicas: int = 2,
    ) -> None:
        self.figures = figures
        self.operator_settings = operator_settings
        self.replicas = replicas
        """Operator replicas at the start; ``scale_operators`` moves between it and one more."""
        self.timeline = timeline
        self.rng = rng
        self.window = window
        """Seconds over which sagas are created; schedules place faults within it."""
        self.scale = scale
        """Network faults last ``scale`` times their schedule's seconds (shorter in CI)."""
        self.api_proxy = api_proxy
        self.broker_proxy = broker_proxy
        self.lock = asyncio.Lock()
        """One process fault at a time: nothing (re)starts while the broker is down."""
        self.ledger = ledger
        self.operators = [
            operator_proc(f"operator-{i}", operator_settings, free_port()) for i in range(replicas)
        ]
        self._named = replicas
        self.workers = [
            worker_proc(f"worker-{i}", worker_settings, prefix, ledger, WORKER_CONCURRENCY)
            for i in range(WORKERS)
        ]
        self.stop = asyncio.Event()
        self.t0 = time.monotonic()

    def _port(self, proc: Proc) -> int:
        return int(proc.env["KUBESAGA_METRICS_PORT"])

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in [*self.operators, *self.workers]))
        self.t0 = time.monotonic()

    # ---------------------------------------------------------------------------- pacing

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` of the schedule; False once the run is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        return not self.stop.is_set()

    async def at(self, fraction: float) -> bool:
        """Wait until ``fraction`` of the creation window has passed; False once stopping."""
        return await self.pause(self.t0 + fraction * self.window - time.monotonic())

    async def every(self, period: float, action: Callable[[], Any]) -> None:
        while await self.pause(period * self.rng.uniform(0.6, 1.4)):
            async with self.lock:
                await action()

    @contextlib.asynccontextmanager
    async def fault(self, name: str) -> AsyncIterator[None]:
        """A window of the figures: from entering to leaving the block."""
        window = Window(name, time.monotonic())
        self.timeline.windows.append(window)
        try:
            yield
        finally:
            window.end = time.monotonic()

    # ----------------------------------------------------------------------- the faults

    async def _scrape_counts(self, proc: Proc) -> None:
        metrics = await scrape(self._port(proc))
        self.figures.conflicts_409 += int(metrics.get("kubesaga_status_conflicts_total", 0))
        self.figures.status_writes += int(metrics.get("kubesaga_status_writes_total", 0))

    async def _start_again(self, proc: Proc) -> None:
        """Start ``proc`` until it is ready, as the kubelet restarts a crashed container: one
        started during a partition from its broker exits (its connect times out)."""
        while True:
            try:
                await proc.start()
                return
            except RuntimeError:  # it exited before it was ready
                self.figures.start_failures += 1
                if not await self.pause(1.0):
                    return

    async def kill_operator(self) -> None:
        proc = self.operators[self.figures.operator_kills % len(self.operators)]
        await self._scrape_counts(proc)
        await proc.kill()
        self.figures.operator_kills += 1
        await self._start_again(proc)
        self.figures.operator_restarts += 1

    async def scale_operators(self) -> None:
        """Add a replica (it takes its share of the shards from the others), or, with one
        more than at the start, remove one gracefully (it hands its shards back)."""
        alive = [p for p in self.operators if p.alive]
        if len(alive) > self.replicas:
            proc = self.rng.choice(alive)
            await self._scrape_counts(proc)
            await proc.stop(grace=10)
            self.operators.remove(proc)
            self.figures.replicas_removed += 1
            return
        proc = operator_proc(f"operator-{self._named}", self.operator_settings, free_port())
        self._named += 1
        self.operators.append(proc)
        await self._start_again(proc)
        self.figures.replicas_added += 1

    async def kill_worker(self) -> None:
        # Prefer a worker that is running a handler right now: the kill lands mid-step.
        busy = [p for p in self.workers if p.pid is not None and open_runs(self.ledger, p.pid)]
        proc = self.rng.choice(busy or self.workers)
        assert proc.pid is not None
        mid_step = open_runs(self.ledger, proc.pid)
        await proc.kill()
        self.figures.worker_kills += 1
        self.figures.worker_kills_mid_step += mid_step > 0
        await self._start_again(proc)
        self.figures.worker_restarts += 1

    async def restart(self, part: Part) -> None:
        """Restart a part of the platform in place; processes wait (the lock) meanwhile."""
        async with self.lock, self.fault(f"restart-{part}"):
            await restart(part)
        if part == "broker":
            self.figures.broker_restarts += 1
        else:
            self.figures.control_plane_restarts += 1

    async def network(
        self,
        name: str,
        proxy: TcpProxy | None,
        seconds: float,
        do: Callable[[TcpProxy], None],
    ) -> None:
        """Apply ``do`` to ``proxy`` for ``seconds``, then heal it (a window named ``name``)."""
        assert proxy is not None, f"{name}: this scenario runs without that proxy"
        async with self.fault(name):
            do(proxy)
            self.figures.network_faults += 1
            try:
                await self.pause(seconds * self.scale)
            finally:
                proxy.heal()

    # ------------------------------------------------------------------------ readiness

    async def sample_readiness(self) -> None:
        """/readyz of each live operator, as the kubelet reads it (a probe is polled): an
        answer other than 200, or none within the probe's timeout, is a failure."""
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while await self.pause(PROBE_EVERY_S):
                for proc in self.operators:
                    if not proc.alive:
                        continue
                    url = f"http://127.0.0.1:{self._port(proc)}/readyz"
                    try:
                        async with http.get(url) as response:
                            ok = response.status == 200
                    except TimeoutError:
                        ok = False
                    except aiohttp.ClientError:
                        continue  # starting or killed: not a readiness answer
                    self.timeline.probes.append((time.monotonic(), ok))

    # ------------------------------------------------------------------------------ end

    async def finish(self) -> None:
        """Stop the faults; scrape the live operators; stop everything gracefully."""
        self.stop.set()
        for proxy in (self.api_proxy, self.broker_proxy):
            if proxy is not None:
                proxy.heal()
        async with self.lock:
            for proc in self.operators:
                if proc.alive:
                    await self._scrape_counts(proc)
            await asyncio.gather(
                *(p.stop(grace=10) for p in [*self.workers, *self.operators]),
                return_exceptions=True,
            )

    async def kill_all(self) -> None:
        for proc in [*self.workers, *self.operators]:
            with contextlib.suppress(Exception):
                await proc.kill()


# ---------------------------------------------------------------------------- schedules


async def control_plane_restarts(chaos: Chaos) -> None:
    """kube-apiserver, then etcd, then both, restarted in place with their data."""
    parts: list[tuple[float, Part]] = [(0.2, "apiserver"), (0.45, "etcd"), (0.7, "control-plane")]
    for fraction, part in parts:
        if not await chaos.at(fraction):
            return
        await chaos.restart(part)


async def api_latency_and_stalls(chaos: Chaos) -> None:
    """operator <-> apiserver: a latency spike (below the probe's 2 s), a bigger one, a stall
    that heals (the bytes arrive late), and a blackhole (those connections are dead for good:
    only the timeouts get the operators going again)."""
    api = chaos.api_proxy
    steps: list[tuple[float, str, float, Callable[[TcpProxy], None]]] = [
        (0.1, "api-latency-0.5s", 8, lambda p: p.delay(0.5)),
        (0.3, "api-latency-2s", 8, lambda p: p.delay(2.0)),
        (0.5, "api-stall", 8, lambda p: p.stall()),
        (0.7, "api-blackhole", 12, lambda p: p.blackhole()),
    ]
    for fraction, name, seconds, do in steps:
        if not await chaos.at(fraction):
            return
        await chaos.network(name, api, seconds, do)


async def broker_partition(chaos: Chaos) -> None:
    """operator <-> broker cut while workers keep their connection: results pile up on the
    results queue. First a stall shorter than the heartbeat's grace (the connection survives,
    the held bytes arrive late), then a blackhole past it (the connection is given up by the
    heartbeat and replaced)."""
    broker = chaos.broker_proxy
    if await chaos.at(0.15):
        await chaos.network("broker-stall", broker, 10, lambda p: p.stall())
    if await chaos.at(0.55):
        await chaos.network("broker-partition", broker, 25, lambda p: p.blackhole())


async def broker_slow(chaos: Chaos) -> None:
    """The broker answers seconds late: broker -> operator delayed (confirms, deliveries)."""
    broker = chaos.broker_proxy
    if await chaos.at(0.15):
        await chaos.network("broker-slow-1s", broker, 10, lambda p: p.delay(1.0, Direction.DOWN))
    if await chaos.at(0.5):
        await chaos.network("broker-slow-4s", broker, 15, lambda p: p.delay(4.0, Direction.DOWN))


async def everything(chaos: Chaos) -> None:
    """Every fault above, one after another, while the process faults run throughout."""
    api, broker = chaos.api_proxy, chaos.broker_proxy
    if await chaos.at(0.1):
        await chaos.restart("control-plane")
    if await chaos.at(0.25):
        await chaos.network("api-latency-1s", api, 6, lambda p: p.delay(1.0))
    if await chaos.at(0.4):
        await chaos.network("broker-partition", broker, 20, lambda p: p.blackhole())
    if await chaos.at(0.6):
        await chaos.network("api-blackhole", api, 10, lambda p: p.blackhole())
    if await chaos.at(0.75):
        await chaos.network("broker-slow-3s", broker, 8, lambda p: p.delay(3.0, Direction.DOWN))
    if await chaos.at(0.9):
        await chaos.restart("broker")
