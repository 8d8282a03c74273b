"""Approval steps: a step that waits for a person or another system instead of a worker.

Once its dependencies succeeded, an approval step waits (``AwaitingApproval``); nothing is
published for it. Its answer arrives in ``spec.approvals`` (the CRD lets an answer in only for a
step that is waiting, and never changes or removes one), and is recorded here exactly once:

- approved: the step succeeds, its output ``{approved, by, reason}`` readable by later steps;
- rejected, or no answer by ``approval.timeoutSeconds``: the step fails and the saga compensates
  as for any failed step;
- the saga compensates for another reason while it waits: the wait is cancelled (Skipped).

An answer already in the spec when the step began to wait never counts (given before the step
waited). An answer the apiserver accepted while the step waited wins over a timeout the operator
had not recorded yet (it looks at answers first): "timed out" means the operator recorded it
before any answer was there. A recorded outcome never changes; any other answer is refused with
an Event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from kubesaga.models import (
    ApprovalAnswer,
    ApprovalOutcome,
    ApprovalStatus,
    ErrorInfo,
    SagaStatus,
    StepPhase,
    StepStatus,
)

if TYPE_CHECKING:
    from kubesaga.engine.draft import Draft


def request(draft: Draft, step: StepStatus) -> None:
    """The step's dependencies succeeded: wait for an answer, until its timeout if it has one."""
    gate = draft.spec.step(step.name).approval
    assert gate is not None
    timeout_at = (
        draft.now + timedelta(seconds=gate.timeout_seconds)
        if gate.timeout_seconds is not None
        else None
    )
    step.phase = StepPhase.AWAITING_APPROVAL
    step.started_at = draft.now
    early = sum(1 for a in draft.spec.approvals if a.step == step.name)
    step.approval = ApprovalStatus(
        requested_at=draft.now, timeout_at=timeout_at, answers_before=early
    )
    until = f" (times out after {gate.timeout_seconds:g}s)" if gate.timeout_seconds else ""
    draft.note(
        "ApprovalRequested",
        f"step {step.name} waits for approval{until}: "
        f"kubesaga approve|reject {draft.saga.ref.name} {step.name}",
        step=step.name,
    )


def take_answers(draft: Draft, spec_changed: bool) -> None:
    """Record the first answer given to each waiting step while it waited; refuse the others
    with an Event (on the spec change that brought them)."""
    taken: list[ApprovalAnswer] = []
    for step in draft.status.steps:
        if step.phase is StepPhase.AWAITING_APPROVAL and step.approval is not None:
            given = [a for a in draft.spec.approvals if a.step == step.name]
            if len(given) > step.approval.answers_before:
                taken.append(given[step.approval.answers_before])
                _record(draft, step, taken[-1])
    if not spec_changed:
        return
    for answer in draft.spec.approvals:
        if any(answer is t for t in taken) or _is_recorded(draft.status, answer):
            continue
        why = refusal(draft.status, answer.step) or "it was given before the step waited"
        draft.note(
            "ApprovalRefused",
            f"answer to step {answer.step} by {answer.by} refused: {why}",
            warning=True,
            step=answer.step,
        )


def refusal(status: SagaStatus, step_name: str) -> str | None:
    """Why step ``step_name`` cannot take an answer now, or None when it waits for one.

    The client asks this before it writes an answer, the engine when it refuses one: the same
    words in the CLI's error and in the Event.
    """
    if status.phase.is_final:
        return f"the saga already ended {status.phase.value}"
    try:
        step = status.step(step_name)
    except KeyError:
        return f"the saga has no step {step_name!r} (or has not started yet)"
    record = step.approval
    if step.phase is StepPhase.AWAITING_APPROVAL:
        return None
    if record is not None and record.outcome is ApprovalOutcome.TIMED_OUT:
        return f"step {step_name} timed out waiting for approval at {record.answered_at}"
    if record is not None and record.outcome is ApprovalOutcome.CANCELLED:
        return f"step {step_name} no longer waits: the saga is {status.phase.value}"
    if record is not None and record.outcome is not None:
        why = f": {record.reason}" if record.reason else ""
        return (
            f"step {step_name} was already {record.outcome.value.lower()} by {record.by} "
            f"at {record.answered_at}{why}"
        )
    if status.phase.value == "Compensating":
        return f"the saga is compensating; step {step_name} will not run"
    if step.phase is StepPhase.PENDING:
        return f"step {step_name} is not waiting yet: its dependencies have not all succeeded"
    return f"step {step_name} is {step.phase.value}, not waiting for approval"


def expire(draft: Draft) -> None:
    """A waiting step past its timeout fails: the saga compensates."""
    for step in draft.status.steps:
        record = step.approval
        if (
            step.phase is StepPhase.AWAITING_APPROVAL
            and record is not None
            and draft.due(record.timeout_at)
        ):
            gate = draft.spec.step(step.name).approval
            seconds = gate.timeout_seconds if gate and gate.timeout_seconds else 0.0
            _close(draft, step, ApprovalOutcome.TIMED_OUT)
            step.phase = StepPhase.FAILED
            step.error = ErrorInfo(
                type="ApprovalTimedOut", message=f"no answer within {seconds:g}s"
            )
            draft.note(
                "ApprovalTimedOut",
                f"step {step.name} got no answer within {seconds:g}s",
                warning=True,
                step=step.name,
            )


def cancel_waiting(draft: Draft) -> None:
    """The saga began compensating: a step still waiting is skipped (nothing to approve)."""
    for step in draft.status.steps:
        if step.phase is StepPhase.AWAITING_APPROVAL:
            _close(draft, step, ApprovalOutcome.CANCELLED)
            step.phase = StepPhase.SKIPPED
            draft.note(
                "ApprovalCancelled",
                f"step {step.name} no longer waits for approval: the saga is compensating",
                step=step.name,
            )


def wake_times(status: SagaStatus) -> list[datetime]:
    """When a waiting step times out: the engine must be called again then."""
    return [
        s.approval.timeout_at
        for s in status.steps
        if s.phase is StepPhase.AWAITING_APPROVAL
        and s.approval is not None
        and s.approval.timeout_at is not None
    ]


def _record(draft: Draft, step: StepStatus, answer: ApprovalAnswer) -> None:
    outcome = ApprovalOutcome.APPROVED if answer.approved else ApprovalOutcome.REJECTED
    record = _close(draft, step, outcome)
    record.by = answer.by
    record.reason = answer.reason
    why = f": {answer.reason}" if answer.reason else ""
    if answer.approved:
        step.phase = StepPhase.SUCCEEDED
        step.output = {"approved": True, "by": answer.by, "reason": answer.reason}
        step.error = None
        draft.note("Approved", f"step {step.name} approved by {answer.by}{why}", step=step.name)
    else:
        step.phase = StepPhase.FAILED
        step.error = ErrorInfo(type="ApprovalRejected", message=f"rejected by {answer.by}{why}")
        draft.note(
            "Rejected",
            f"step {step.name} rejected by {answer.by}{why}",
            warning=True,
            step=step.name,
        )


def _close(draft: Draft, step: StepStatus, outcome: ApprovalOutcome) -> ApprovalStatus:
    record = step.approval
    assert record is not None
    record.outcome = outcome
    record.answered_at = draft.now
    step.finished_at = draft.now
    return record


def _is_recorded(status: SagaStatus, answer: ApprovalAnswer) -> bool:
    """``answer`` is the one recorded for its step (so not a second answer)."""
    try:
        record = status.step(answer.step).approval
    except KeyError:
        return False
    expected = ApprovalOutcome.APPROVED if answer.approved else ApprovalOutcome.REJECTED
    return (
        record is not None
        and record.outcome is expected
        and record.by == answer.by
        and record.reason == answer.reason
    )
