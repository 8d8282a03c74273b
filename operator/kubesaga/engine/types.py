"""What goes into the engine and what comes out of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kubesaga.models import Command, Result, SagaRef, SagaSpec, SagaStatus


@dataclass(frozen=True)
class SagaView:
    """One Saga as the operator last saw it: identity, spec and (possibly no) status."""

    ref: SagaRef
    generation: int
    spec: SagaSpec
    status: SagaStatus | None


@dataclass(frozen=True)
class Reconcile:
    """Look at the saga again: it was created, resumed, its spec changed, or a timer fired."""


@dataclass(frozen=True)
class ResultReceived:
    """A worker's result arrived on the results queue."""

    result: Result


Event = Reconcile | ResultReceived


class Verdict(StrEnum):
    """What became of a result (Reconcile events are always APPLIED)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    """Already recorded: acknowledge and drop."""
    REJECTED = "rejected"
    """Unknown or stale dispatch id, wrong saga: dead-letter with the reason."""


@dataclass(frozen=True)
class Transition:
    """Something worth a Kubernetes Event and a log line."""

    reason: str
    message: str
    warning: bool = False
    step: str | None = None


@dataclass(frozen=True)
class Decision:
    """The engine's answer: the status to write, then the commands to publish."""

    status: SagaStatus
    changed: bool
    """Whether status differs from the input (no write is needed when False)."""
    commands: tuple[Command, ...] = ()
    """To publish after the status write succeeded (status is the outbox)."""
    transitions: tuple[Transition, ...] = ()
    wake_at: datetime | None = None
    """Earliest time the engine must be called again (backoff, timeout, deadline)."""
    verdicts: tuple[tuple[Verdict, str], ...] = ()
    """Verdict and reason per event, in the order of the events."""
    samples: tuple[tuple[str, float], ...] = field(default=())
    """(action, seconds from dispatch to result) for results applied in this call."""

    @property
    def verdict(self) -> Verdict:
        """What became of the first (for ``decide``: the only) event."""
        return self.verdicts[0][0] if self.verdicts else Verdict.APPLIED

    @property
    def reason(self) -> str:
        """Why the first event's result was rejected or recognised as a duplicate."""
        return self.verdicts[0][1] if self.verdicts else ""
