"""Time for the operator shell, passed in so the orchestrator's tests need no real waiting.

Two clocks because they answer different questions: wall time (``now``) is what the engine and
status speak (deadlines survive a restart), monotonic time is what in-process timers count in
(it never jumps when the host's clock is corrected).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time, timezone-aware."""
        ...

    def monotonic(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        """Call ``callback`` once the monotonic time reaches ``when``."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks, with timers on the running event loop."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        loop = asyncio.get_running_loop()
        # An empty context: the caller's (kopf's handler, say) would be kept alive until it fires.
        return loop.call_at(
            loop.time() + max(when - time.monotonic(), 0.0), callback, context=contextvars.Context()
        )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
