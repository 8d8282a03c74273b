"""SIGTERM/SIGINT for the long-running commands: stop gracefully, but always within a deadline.

A graceful stop waits for things outside the process (a broker to confirm, an apiserver to
answer); when those are gone it could wait forever, and Kubernetes would SIGKILL the pod at the
end of its grace period with nothing logged. So the first signal sets ``stop`` and arms a deadline;
past the deadline, or on a second signal (the usual "I mean it" of a person at a terminal), the
process says why and exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

log = logging.getLogger("kubesaga")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """Signal handlers for one process; ``install`` again after a library replaced them."""

    def __init__(self, stop: asyncio.Event, deadline: float, what: str) -> None:
        self.stop = stop
        self.deadline = deadline
        """Seconds from the first signal to the forced exit."""
        self.what = what
        self._timer: asyncio.TimerHandle | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("%s: second %s; exiting now", self.what, sig.name)
            _exit(128 + sig.value)
        log.info("%s: %s received; stopping (at most %.0fs)", self.what, sig.name, self.deadline)
        self.stop.set()
        self._timer = asyncio.get_running_loop().call_later(self.deadline, self._expired)

    def _expired(self) -> None:
        log.error(
            "%s: not stopped %.0fs after the signal; exiting now; still waiting in: %s",
            self.what,
            self.deadline,
            "; ".join(_waiting()) or "nothing",
        )
        _exit(1)


def _waiting() -> list[str]:
    """Where each unfinished task is suspended (its innermost frames first): what a stop waited
    for, so the forced exit can be investigated."""
    places = []
    for task in asyncio.all_tasks():
        frames: list[str] = []
        awaited: Any = task.get_coro()
        while (frame := getattr(awaited, "cr_frame", None)) is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
            awaited = getattr(awaited, "cr_await", None)
        places.append(f"{task.get_name()} at {' < '.join(reversed(frames[-4:])) or '?'}")
    return sorted(places)


def _exit(code: int) -> None:
    """Exit without waiting for anything (cleanup is what hangs); flush what was said first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not keep us alive
            stream.flush()
    os._exit(code)
