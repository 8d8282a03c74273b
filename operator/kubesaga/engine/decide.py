"""The saga state machine: ``decide_all(saga, events, now, token) -> Decision``.

Pure: no I/O, no clock, no randomness. Time arrives as ``now``; the random part of dispatch ids
arrives as ``token``. Every saga rule (docs/architecture.md, "The engine") lives in this package,
so it can be tested without a cluster or a broker, and the operator stays a thin
read-decide-write-publish loop. This module is the entry: the validation gate, the events
applied in order, then one step forward (``forward.py``) or back (``compensation.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kubesaga.engine import approval, compensation, forward, phase, redrive, results, suspend
from kubesaga.engine.commands import attempt_of, awaiting_result
from kubesaga.engine.draft import EXPECTED_PHASE, Draft
from kubesaga.engine.graph import spec_problem, status_problem
from kubesaga.engine.types import (
    APPLIED,
    Decision,
    Event,
    InvalidSpec,
    Judgement,
    ResultReceived,
    SagaView,
    Verdict,
)
from kubesaga.models import CommandKind, ErrorInfo, SagaPhase, SagaStatus, StepPhase


def decide(saga: SagaView | InvalidSpec, event: Event, now: datetime, token: str) -> Decision:
    """Apply ``event`` to ``saga`` at time ``now``; return the new status and what to publish."""
    return decide_all(saga, [event], now, token)


def decide_all(
    saga: SagaView | InvalidSpec, events: Sequence[Event], now: datetime, token: str
) -> Decision:
    """Apply several events that arrived together, then move the saga on once.

    Recording every result before deciding what to dispatch matters: with [b succeeded,
    c failed] in one batch, the successor of b must not be dispatched, since c's failure starts
    compensation. ``Decision.judgements`` has one entry per event.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not events:
        raise ValueError("decide_all needs at least one event")
    if isinstance(saga, InvalidSpec):
        return _refuse_invalid_spec(saga, events, now)
    draft = Draft(saga, now, token)
    refusal = _admit(draft)
    if refusal is not None:
        return draft.decision(_refuse(events, refusal))
    return draft.decision(_apply(draft, events))


def _apply(draft: Draft, events: Sequence[Event]) -> list[Judgement]:
    """Record every event in order, then move the saga on once if any of them counted."""
    spec_changed = draft.status.observed_generation != draft.saga.generation
    draft.status.observed_generation = draft.saga.generation
    suspend.lift(draft)
    judgements = [
        results.judge(draft, event.result) if isinstance(event, ResultReceived) else APPLIED
        for event in events
    ]
    # A new generation is looked at even when only duplicate results came with it: the status
    # written now records it as observed, so no later Reconcile would take it up (an answer to
    # an approval, spec.compensate set while the operator was down and a result redelivered).
    if spec_changed or any(j.verdict is Verdict.APPLIED for j in judgements):
        _advance(draft, spec_changed)
    suspend.hold(draft)
    return judgements


def _refuse(events: Sequence[Event], reason: str) -> list[Judgement]:
    refused = Judgement(Verdict.REJECTED, reason)
    return [refused if isinstance(e, ResultReceived) else APPLIED for e in events]


def _refuse_invalid_spec(saga: InvalidSpec, events: Sequence[Event], now: datetime) -> Decision:
    """A spec that does not parse: a new saga fails at once; one that already ran keeps its
    status (a human must look). Either way no result is accepted and nothing is dispatched."""
    status = saga.status.model_copy(deep=True) if saga.status else SagaStatus()
    transitions = []
    if status.phase is SagaPhase.PENDING or status.observed_generation is None:
        transitions.append(phase.fail_invalid_spec(status, saga.problem, now))
    status.observed_generation = saga.generation
    return Decision(
        status=status,
        changed=status != saga.status,
        judgements=tuple(_refuse(events, "saga spec is invalid")),
        transitions=tuple(transitions),
    )


def _admit(draft: Draft) -> str | None:
    """The validation gate: start a saga not seen yet, or say why its results are refused.

    A spec is checked once, when the saga starts; a status from elsewhere (edited by hand?) is
    checked on every call, since the engine trusts only what it wrote.
    """
    status = draft.status
    if draft.saga.status is None or status.observed_generation is None:
        problem = spec_problem(draft.spec)
        if problem:
            draft.transitions.append(phase.fail_invalid_spec(status, problem, draft.now))
            status.observed_generation = draft.saga.generation
            return "saga spec is invalid"
        forward.start(draft)
        return None
    if phase.refused(status):
        redrive.refuse_if_requested(draft)
        return "saga was rejected as invalid"
    problem = status_problem(draft.spec, status)
    if problem:
        draft.transitions.append(phase.fail_invalid_status(status, problem, draft.now))
        return "saga status is invalid"
    return None


def _advance(draft: Draft, spec_changed: bool) -> None:
    """One step on from what the events left: answers, time out, then forward or back."""
    approval.take_answers(draft, spec_changed)
    _expire_attempts(draft)
    redrive.requested(draft)
    status = draft.status
    if suspend.hold(draft):
        return
    suspend.ignored(draft, spec_changed)
    if status.phase is SagaPhase.RUNNING:
        cause = forward.compensation_cause(draft)
        if cause:
            compensation.begin(draft, *cause)
        else:
            forward.dispatch_ready(draft)
            if all(s.phase is StepPhase.SUCCEEDED for s in status.steps):
                draft.transitions.append(
                    phase.finish(
                        status, SagaPhase.COMPLETED, "Completed", "all steps succeeded", draft.now
                    )
                )
                return
    elif status.phase is SagaPhase.COMPLETED and draft.spec.compensate:
        compensation.begin(
            draft, "CompensationRequested", "compensation requested on a completed saga"
        )
    elif status.phase.is_final and draft.spec.compensate and spec_changed:
        draft.note(
            "CompensationIgnored",
            f"compensation requested, but the saga already ended {status.phase.value}; "
            "nothing to do",
            warning=status.phase is SagaPhase.FAILED,
        )
    if status.phase is SagaPhase.COMPENSATING and not suspend.hold(draft):
        compensation.compensate(draft)


def _expire_attempts(draft: Draft) -> None:
    """Timeouts: an attempt past its deadline counts as a retryable failure; an approval past
    its timeout fails its step."""
    approval.expire(draft)
    for step in draft.status.steps:
        for kind, expected in EXPECTED_PHASE.items():
            attempt = attempt_of(step, kind)
            if (
                step.phase is expected
                and awaiting_result(attempt)
                and draft.due(attempt.attempt_deadline)
            ):
                timeout = draft.spec.step(step.name).timeout_seconds
                error = ErrorInfo(
                    type="Timeout",
                    message=f"attempt {attempt.attempt} timed out after {timeout:g}s",
                    retryable=True,
                )
                if kind is CommandKind.EXECUTE:
                    forward.fail_attempt(draft, step, error)
                else:
                    compensation.fail(draft, step, error)
