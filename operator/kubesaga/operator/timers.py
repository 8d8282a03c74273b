"""When to look at a saga again: engine wake-ups, redelivery and TTL, as one timer per saga.

The absolute times live in status (backoff, attempt timeouts, the saga deadline, when it
finished), so a restarted operator re-arms them from what the engine decides on what it reads;
only redelivery counts from this process's own publishes (``outbox.py``). ``plan`` is pure: it
names the earliest reason to wake, and the loop acts on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from kubesaga.operator.cache import Key
from kubesaga.operator.clock import Cancellable, Clock


@dataclass(frozen=True)
class Plan:
    wake_at: float | None
    """Monotonic time of the next look, or None for none."""
    expired: bool = False
    """The saga's TTL has passed: delete it now."""


def plan(
    wake_at: datetime | None,
    expires_at: datetime | None,
    redeliver_at: float | None,
    now: datetime,
    now_mono: float,
) -> Plan:
    """The earliest of: the engine's ``wake_at``, the redelivery due time, the TTL expiry.

    ``wake_at`` and ``expires_at`` come from the engine's decision in wall time; timers count in
    monotonic time, which never jumps when the host's clock is corrected.
    """

    def mono(when: datetime) -> float:
        return now_mono + max((when - now).total_seconds(), 0.0)

    candidates = [] if redeliver_at is None else [redeliver_at]
    if wake_at is not None:
        candidates.append(mono(wake_at))
    if expires_at is not None:
        if expires_at <= now:
            return Plan(None, expired=True)
        candidates.append(mono(expires_at))
    return Plan(min(candidates) if candidates else None)


class Timers:
    """At most one armed timer per saga; arming again only ever moves it earlier."""

    def __init__(self, clock: Clock, fire: Callable[[Key], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._armed: dict[Key, tuple[float, Cancellable]] = {}
        self.closed = False

    def arm(self, key: Key, when: float) -> None:
        armed = self._armed.get(key)
        if self.closed or (armed is not None and armed[0] <= when):
            return
        if armed is not None:
            armed[1].cancel()
        self._armed[key] = (when, self._clock.call_at(when, lambda: self._wake(key)))

    def armed_at(self, key: Key) -> float | None:
        armed = self._armed.get(key)
        return armed[0] if armed is not None else None

    def cancel(self, key: Key) -> None:
        armed = self._armed.pop(key, None)
        if armed is not None:
            armed[1].cancel()

    def _wake(self, key: Key) -> None:
        self._armed.pop(key, None)
        if not self.closed:
            self._fire(key)

    def close(self) -> None:
        self.closed = True
        for key in list(self._armed):
            self.cancel(key)
