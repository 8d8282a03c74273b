"""Liveness and readiness of one process, served over HTTP for the kubelet's probes.

``/livez`` answers "restart me?": it fails only when the process cannot make progress, i.e. its
event loop has not run a heartbeat for ``stall_after`` seconds (a loop blocked outright does not
answer at all, which the kubelet counts as a failure too). An unreachable broker or Kubernetes API
is deliberately *not* a liveness failure: restarting cannot fix it, and it would crash-loop every
pod for as long as the outage lasts.

``/readyz`` answers "can it serve now?": every registered check passes (broker connected, API
reachable, watch or consumers running...). Both answer in the style of the kube-apiserver's own
endpoints: one ``[+]name ok`` or ``[-]name failed`` line per check.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]
"""A readiness check: True when that part can serve. May be a coroutine function."""

DEFAULT_STALL_SECONDS = 30.0
DEFAULT_BEAT_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Report:
    """The outcome of a probe: each check by name, and whether all passed."""

    endpoint: str
    checks: tuple[tuple[str, bool], ...]

    @property
    def ok(self) -> bool:
        """All checks passed; with none registered (yet, or any more) nothing is ready."""
        return bool(self.checks) and all(passed for _, passed in self.checks)

    def render(self) -> str:
        lines = [f"[+]{name} ok" if ok else f"[-]{name} failed" for name, ok in self.checks]
        lines.append(f"{self.endpoint} check {'passed' if self.ok else 'failed'}")
        return "\n".join(lines) + "\n"


class Health:
    """What a process reports to its probes; see the module docstring for the two questions."""

    def __init__(
        self,
        *,
        stall_after: float = DEFAULT_STALL_SECONDS,
        beat_every: float = DEFAULT_BEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after = stall_after
        self.beat_every = beat_every
        self._clock = clock
        self._last_beat = clock()
        self._checks: dict[str, Check] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    def add_check(self, name: str, check: Check) -> None:
        """Make readiness depend on ``check`` as well (one per name)."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)

    def start(self) -> None:
        """Start the heartbeat task (idempotent); ``close()`` stops it."""
        if self._heartbeat is None:
            self._last_beat = self._clock()
            self._heartbeat = asyncio.create_task(self._beat(), name="kubesaga health heartbeat")

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    async def _beat(self) -> None:
        while True:
            self._last_beat = self._clock()
            await asyncio.sleep(self.beat_every)

    def liveness(self) -> Report:
        stalled = self._clock() - self._last_beat > self.stall_after
        running = self._heartbeat is not None and not self._heartbeat.done()
        return Report("livez", (("event-loop", running and not stalled),))

    async def readiness(self) -> Report:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(name) for name in names))
        return Report("readyz", tuple(zip(names, results, strict=True)))

    async def _run(self, name: str) -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                outcome = self._checks[name]()
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                return bool(outcome)
        except Exception:
            log.warning("readiness check %s raised", name, exc_info=True)
            return False


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(
    health: Health, host: str, port: int, routes: Mapping[str, Route] | None = None
) -> web.AppRunner:
    """Serve ``/livez`` and ``/readyz`` (plus ``routes``, e.g. ``/metrics``) on host:port.

    The caller keeps the runner and calls ``cleanup()`` at exit.
    """

    async def livez(_: web.Request) -> web.Response:
        return _respond(health.liveness())

    async def readyz(_: web.Request) -> web.Response:
        return _respond(await health.readiness())

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    for path, view in (routes or {}).items():
        app.router.add_get(path, view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def _respond(report: Report) -> web.Response:
    return web.Response(status=200 if report.ok else 503, text=report.render())
