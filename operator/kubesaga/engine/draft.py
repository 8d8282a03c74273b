"""One call of the engine: a private working copy of the status, and the decision it becomes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from kubesaga.engine import approval
from kubesaga.engine.commands import attempt_of, awaiting_result, build_command, make_dispatch_id
from kubesaga.engine.graph import StepGraph
from kubesaga.engine.phase import refused, summarise
from kubesaga.engine.types import (
    Decision,
    Dispatched,
    InFlight,
    Judgement,
    LatencySample,
    SagaView,
    Transition,
)
from kubesaga.models import CommandKind, SagaPhase, SagaStatus, StepPhase, StepSpec, StepStatus

EXPECTED_PHASE = {
    CommandKind.EXECUTE: StepPhase.RUNNING,
    CommandKind.COMPENSATE: StepPhase.COMPENSATING,
}
"""The step phase in which a result of each kind of command is still awaited."""


class Draft:
    """The status being edited (a deep copy: the input is never touched) and what to emit."""

    def __init__(self, saga: SagaView, now: datetime, token: str) -> None:
        self.saga = saga
        self.spec = saga.spec
        self.now = now
        self.token = token
        self.graph = StepGraph.of(saga.spec)
        self.status = saga.status.model_copy(deep=True) if saga.status else SagaStatus()
        self.dispatched: list[tuple[StepSpec, CommandKind]] = []
        self.transitions: list[Transition] = []
        self.samples: list[LatencySample] = []

    def note(self, reason: str, message: str, warning: bool = False, step: str = "") -> None:
        self.transitions.append(Transition(reason, message, warning, step or None))

    def due(self, when: datetime | None) -> bool:
        """``when`` (a retry's time, a deadline) has come."""
        return when is not None and when <= self.now

    def dispatch(self, step: StepStatus, kind: CommandKind) -> None:
        """Record a new attempt of the step's action or compensation; its command is published
        once the status that records it is written."""
        attempt = attempt_of(step, kind)
        assert attempt is not None
        spec = self.spec.step(step.name)
        attempt.attempt += 1
        attempt.dispatch_id = make_dispatch_id(
            self.saga.ref.uid, step.name, kind, attempt.attempt, self.token
        )
        attempt.dispatched_at = self.now
        attempt.next_attempt_at = None
        attempt.finished_at = None
        attempt.started_at = attempt.started_at or self.now
        attempt.attempt_deadline = (
            self.now + timedelta(seconds=spec.timeout_seconds)
            if spec.timeout_seconds is not None
            else None
        )
        self.dispatched.append((spec, kind))

    def decision(self, judgements: Sequence[Judgement]) -> Decision:
        summarise(self.status)
        status = self.status
        decided = SagaView(self.saga.ref, self.saga.generation, self.spec, status)
        return Decision(
            status=status,
            changed=status != self.saga.status,
            judgements=tuple(judgements),
            commands=tuple(
                build_command(self.saga.ref, self.spec, self.graph, status, step, kind)
                for step, kind in self.dispatched
            ),
            in_flight=InFlight(self._in_flight(), decided),
            transitions=tuple(self.transitions),
            wake_at=self._wake_at(),
            expires_at=self._expires_at(),
            samples=tuple(self.samples),
        )

    def _in_flight(self) -> tuple[Dispatched, ...]:
        if refused(self.status):
            return ()  # a refused saga dispatches nothing, not even again
        out: list[Dispatched] = []
        for step in self.status.steps:
            for kind, phase in EXPECTED_PHASE.items():
                attempt = attempt_of(step, kind)
                if step.phase is phase and awaiting_result(attempt):
                    assert attempt.dispatch_id is not None
                    out.append(Dispatched(attempt.dispatch_id, step.name, kind))
        return tuple(out)

    def _wake_at(self) -> datetime | None:
        times: list[datetime] = []
        held = self.status.phase is SagaPhase.SUSPENDED  # only a timeout can change it
        for step in self.status.steps:
            for attempt in (step.execution, step.compensation):
                if attempt is None:
                    continue
                if attempt.next_attempt_at is not None and not held:
                    times.append(attempt.next_attempt_at)
                if awaiting_result(attempt) and attempt.attempt_deadline is not None:
                    times.append(attempt.attempt_deadline)
        times.extend(approval.wake_times(self.status))
        if self.status.phase is SagaPhase.RUNNING and self.status.deadline_at is not None:
            times.append(self.status.deadline_at)
        return min(times) if times else None

    def _expires_at(self) -> datetime | None:
        ttl, status = self.spec.ttl_seconds_after_finished, self.status
        if ttl is None or not status.phase.is_final or status.finished_at is None:
            return None
        return status.finished_at + timedelta(seconds=ttl)
