"""The saga's phase, reason and message, always changed together with its conditions.

``Finished`` (``kubectl wait --for=condition=Finished``) and ``Valid`` must never disagree with
the phase, so nothing else in the engine sets any of them. Each change returns the Transition it
is worth (a Kubernetes Event and a log line).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from kubesaga.engine.types import Transition
from kubesaga.models import (
    Condition,
    ConditionStatus,
    SagaPhase,
    SagaStatus,
    StepPhase,
    StepStatus,
    limits,
)

REFUSED_REASONS = ("InvalidSpec", "InvalidStatus")
"""Reasons of a saga the engine refused to run: it dispatches and accepts nothing more."""


BUSY = (StepPhase.RUNNING, StepPhase.AWAITING_APPROVAL, StepPhase.COMPENSATING)
"""Step phases shown in the ``Current`` printer column."""


def refused(status: SagaStatus) -> bool:
    return status.reason in REFUSED_REASONS


def set_condition(
    status: SagaStatus,
    type_: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> None:
    for cond in status.conditions:
        if cond.type == type_:
            if cond.status != value:
                cond.last_transition_time = now
            cond.status = value
            cond.reason = reason
            cond.message = message
            return
    status.conditions.append(
        Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=now,
        )
    )


def start(
    status: SagaStatus,
    steps: Sequence[str],
    generation: int,
    deadline_seconds: float | None,
    now: datetime,
) -> Transition:
    """Accept a saga: one Pending entry per step, Running, and the deadline fixed from now."""
    status.steps = [StepStatus(name=name) for name in steps]
    status.phase = SagaPhase.RUNNING
    status.reason = "Started"
    status.message = f"started with {len(status.steps)} steps"
    status.started_at = now
    status.observed_generation = generation
    if deadline_seconds is not None:
        status.deadline_at = now + timedelta(seconds=deadline_seconds)
    set_condition(status, "Valid", "True", "Accepted", "", now)
    set_condition(status, "Finished", "False", "Running", "", now)
    return Transition("Started", status.message)


def fail_invalid_spec(status: SagaStatus, problem: str, now: datetime) -> Transition:
    """A spec that cannot run: Failed, with a Valid=False condition saying why."""
    status.phase = SagaPhase.FAILED
    status.reason = "InvalidSpec"
    status.message = f"invalid saga: {problem}"
    status.started_at = status.started_at or now
    status.finished_at = now
    set_condition(status, "Valid", "False", "InvalidSpec", problem, now)
    set_condition(status, "Finished", "True", "Failed", status.message, now)
    return Transition("InvalidSpec", status.message, warning=True)


def fail_invalid_status(status: SagaStatus, problem: str, now: datetime) -> Transition:
    """A status that cannot belong to this spec (edited by hand?): stop, a human must look."""
    status.phase = SagaPhase.FAILED
    status.reason = "InvalidStatus"
    status.message = f"invalid status: {problem}; nothing more is dispatched"
    status.finished_at = now
    set_condition(status, "Finished", "True", "Failed", status.message, now)
    return Transition("InvalidStatus", status.message, warning=True)


def begin_compensating(status: SagaStatus, reason: str, message: str, now: datetime) -> Transition:
    status.phase = SagaPhase.COMPENSATING
    status.reason = reason
    status.message = message
    status.finished_at = None
    status.compensation_requested_at = now
    set_condition(status, "Finished", "False", "Compensating", message, now)
    return Transition("Compensating", message, warning=True)


def finish(
    status: SagaStatus, phase: SagaPhase, reason: str, message: str, now: datetime
) -> Transition:
    status.phase = phase
    status.reason = reason
    status.message = message
    status.finished_at = now
    set_condition(status, "Finished", "True", phase.value, message, now)
    return Transition(phase.value, message, warning=phase is SagaPhase.FAILED)


def summarise(status: SagaStatus) -> None:
    """The fields derived from the rest: printer columns and a message that fits its limit."""
    if len(status.message) > limits.MAX_STATUS_MESSAGE_CHARS:
        status.message = status.message[: limits.MAX_STATUS_MESSAGE_CHARS - 1] + "…"
    done = sum(1 for s in status.steps if s.phase is StepPhase.SUCCEEDED)
    status.progress = f"{done}/{len(status.steps)}"
    busy = [s.name for s in status.steps if s.phase in BUSY]
    status.current_step = ",".join(busy) if busy else None
