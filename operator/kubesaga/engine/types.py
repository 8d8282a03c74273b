"""What goes into the engine and what comes out of it."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kubesaga.engine.commands import build_command
from kubesaga.engine.graph import StepGraph
from kubesaga.models import Command, CommandKind, Result, SagaRef, SagaSpec, SagaStatus


@dataclass(frozen=True)
class SagaView:
    """One Saga as the operator last saw it: identity, spec and (possibly no) status."""

    ref: SagaRef
    generation: int
    spec: SagaSpec
    status: SagaStatus | None


@dataclass(frozen=True)
class InvalidSpec:
    """One Saga whose spec does not parse: the engine fails it and refuses its results.

    Not a ``SagaView`` because there is no ``SagaSpec`` to hold. Its status is kept when it
    parses, so a saga that already ran keeps its record.
    """

    ref: SagaRef
    generation: int
    problem: str
    """What is wrong with the spec, one ``field: message`` per problem, joined by "; "."""
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
class Judgement:
    """What became of one event, and why when it was not applied."""

    verdict: Verdict
    reason: str = ""


APPLIED = Judgement(Verdict.APPLIED)


@dataclass(frozen=True)
class LatencySample:
    """Seconds from the dispatch of a command to the result the engine applied."""

    action: str
    seconds: float


@dataclass(frozen=True)
class Transition:
    """Something worth a Kubernetes Event and a log line."""

    reason: str
    message: str
    warning: bool = False
    step: str | None = None


@dataclass(frozen=True)
class Dispatched:
    """A command recorded in status whose result has not been recorded yet."""

    dispatch_id: str
    step: str
    kind: CommandKind


@dataclass(frozen=True)
class InFlight:
    """Every command still unanswered after a decision, with what it takes to send it again.

    The shell tracks the dispatch ids after every decision (redelivery) but needs the commands
    themselves only to re-publish (the first look at a saga in this process, or a command left
    unanswered too long), so they are built on demand: building them all after every write cost
    about a quarter of the engine's time, only to learn ids the engine had just set.
    """

    dispatches: tuple[Dispatched, ...] = ()
    saga: SagaView | None = field(default=None, repr=False, compare=False)
    """The saga as decided (its new status), to build the commands from."""

    @property
    def dispatch_ids(self) -> tuple[str, ...]:
        return tuple(d.dispatch_id for d in self.dispatches)

    def commands(self, dispatch_ids: Container[str]) -> list[Command]:
        """The commands of those dispatch ids, identical to their first publish (same ids)."""
        wanted = [d for d in self.dispatches if d.dispatch_id in dispatch_ids]
        if not wanted or self.saga is None or self.saga.status is None:
            return []
        saga, status = self.saga, self.saga.status
        graph = StepGraph.of(saga.spec)
        return [
            build_command(saga.ref, saga.spec, graph, status, saga.spec.step(d.step), d.kind)
            for d in wanted
        ]


@dataclass(frozen=True)
class Decision:
    """The engine's answer: the status to write, then everything the shell does next."""

    status: SagaStatus
    changed: bool
    """Whether status differs from the input (no write is needed when False)."""
    judgements: tuple[Judgement, ...]
    """One per event, in the order of the events."""
    commands: tuple[Command, ...] = ()
    """To publish after the status write succeeded (status is the outbox)."""
    in_flight: InFlight = field(default_factory=InFlight)
    """Every command unanswered once ``status`` is written, ``commands`` included."""
    transitions: tuple[Transition, ...] = ()
    wake_at: datetime | None = None
    """Earliest time the engine must be called again (backoff, timeout, deadline)."""
    expires_at: datetime | None = None
    """When the finished saga is to be deleted (``ttlSecondsAfterFinished``), else None."""
    samples: tuple[LatencySample, ...] = ()
    """One per result applied in this call."""

    @property
    def verdict(self) -> Verdict:
        """What became of the first (for ``decide``: the only) event."""
        return self.judgements[0].verdict

    @property
    def reason(self) -> str:
        """Why the first event's result was rejected or recognised as a duplicate."""
        return self.judgements[0].reason
