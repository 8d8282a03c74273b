"""Rolling a saga back: which steps need undoing, in what order, and how it ends.

A step's compensation starts only once nothing downstream of it is left to undo (its
dependents, transitively through steps that have nothing to undo). A failed compensation
blocks the compensation of the steps it depends on: undoing an order whose refund failed would
be wrong. The saga then ends Failed, naming what failed and what was left uncompensated.
"""

from __future__ import annotations

from kubesaga.engine import approval, phase
from kubesaga.engine.commands import awaiting_result
from kubesaga.engine.draft import Draft
from kubesaga.engine.retry import retry_or_give_up
from kubesaga.models import (
    CommandKind,
    CompensationStatus,
    ErrorInfo,
    Result,
    ResultStatus,
    SagaPhase,
    StepPhase,
    StepStatus,
)

MAY_NEED_COMPENSATION = (StepPhase.SUCCEEDED, StepPhase.FAILED)
"""Phases in which a step may have something to undo; ``needs_compensation`` says if it does."""

NOTHING_TO_UNDO = (StepPhase.SKIPPED, StepPhase.COMPENSATED, StepPhase.PENDING)


def begin(draft: Draft, reason: str, message: str) -> None:
    """The saga turns Compensating: nothing new starts, and retries waiting are cancelled.

    A step in flight is awaited (and compensated if it succeeds); one waiting for a retry is
    failed, since the retry would only be undone again.
    """
    draft.transitions.append(phase.begin_compensating(draft.status, reason, message, draft.now))
    approval.cancel_waiting(draft)
    for step in draft.status.steps:
        if step.phase is StepPhase.PENDING:
            step.phase = StepPhase.SKIPPED
        elif step.phase is StepPhase.RUNNING and not awaiting_result(step.execution):
            step.phase = StepPhase.FAILED
            execution = step.execution
            execution.finished_at = draft.now
            execution.next_attempt_at = None
            last = execution.error.message if execution.error else "no error recorded"
            execution.error = ErrorInfo(
                type=execution.error.type if execution.error else "Cancelled",
                message=f"retry cancelled because the saga is compensating; last error: {last}",
                retryable=False,
            )


def record(draft: Draft, step: StepStatus, result: Result) -> None:
    """A compensation's result: the step is Compensated, or its compensation failed."""
    comp = step.compensation
    assert comp is not None
    comp.attempt_deadline = None
    if result.status is ResultStatus.SUCCEEDED:
        step.phase = StepPhase.COMPENSATED
        comp.finished_at = draft.now
        comp.error = None
        draft.note("StepCompensated", f"step {step.name} compensated", step=step.name)
        return
    assert result.error is not None
    fail(draft, step, result.error)


def fail(draft: Draft, step: StepStatus, error: ErrorInfo) -> None:
    """A compensation attempt failed (or timed out): retry under the policy, or give up."""
    if retry_or_give_up(draft, step, CommandKind.COMPENSATE, error):
        return
    step.phase = StepPhase.COMPENSATION_FAILED
    comp = step.compensation
    assert comp is not None and comp.error is not None
    draft.note(
        "CompensationFailed",
        f"compensation of step {step.name} failed after {comp.attempt} attempts: "
        f"{comp.error.type}: {comp.error.message}",
        warning=True,
        step=step.name,
    )


def needs_compensation(draft: Draft, step: StepStatus) -> bool:
    """The step did something (it ran, and succeeded or may undo a failure) and can undo it."""
    spec = draft.spec.step(step.name)
    if spec.compensation is None or step.execution.attempt == 0:
        return False
    if step.phase is StepPhase.SUCCEEDED:
        return True
    return step.phase is StepPhase.FAILED and spec.compensate_on_failure


def nothing_left_to_undo(draft: Draft) -> dict[str, bool]:
    """Per step: neither it nor anything downstream of it needs more compensation work."""
    settled: dict[str, bool] = {}
    for step in draft.status.steps:
        if step.phase in NOTHING_TO_UNDO:
            settled[step.name] = True
        elif step.phase in MAY_NEED_COMPENSATION:
            settled[step.name] = not needs_compensation(draft, step)
        else:
            settled[step.name] = False
    clear: dict[str, bool] = {}

    def visit(name: str) -> bool:
        if name not in clear:
            clear[name] = settled[name] and all(visit(d) for d in draft.graph.dependents[name])
        return clear[name]

    for name in draft.graph.order:
        visit(name)
    return clear


def compensate(draft: Draft) -> None:
    """One step of a compensating saga: dispatch what may start, end it once nothing is busy."""
    dispatch_ready(draft)
    if not any(s.phase in (StepPhase.RUNNING, StepPhase.COMPENSATING) for s in draft.status.steps):
        end(draft)


def dispatch_ready(draft: Draft) -> None:
    """First compensations of steps with nothing left to undo downstream, and retries now due."""
    clear = nothing_left_to_undo(draft)
    for step in draft.status.steps:
        if step.phase in MAY_NEED_COMPENSATION and needs_compensation(draft, step):
            if all(clear[d] for d in draft.graph.dependents[step.name]):
                step.phase = StepPhase.COMPENSATING
                step.compensation = CompensationStatus()
                draft.dispatch(step, CommandKind.COMPENSATE)
        elif (
            step.phase is StepPhase.COMPENSATING
            and step.compensation is not None
            and draft.due(step.compensation.next_attempt_at)
        ):
            draft.dispatch(step, CommandKind.COMPENSATE)


def end(draft: Draft) -> None:
    """Nothing is in flight or due: Failed if a compensation failed, else Compensated."""
    status = draft.status
    failed = [s for s in status.steps if s.phase is StepPhase.COMPENSATION_FAILED]
    if failed:
        outcome = (SagaPhase.FAILED, "CompensationFailed", _failures(draft, failed))
    else:
        what = _undone_in_order(draft) or "nothing needed undoing"
        outcome = (
            SagaPhase.COMPENSATED,
            status.reason or "Compensated",
            f"{status.message}; compensated: {what}",
        )
    draft.transitions.append(phase.finish(status, *outcome, draft.now))


def _failures(draft: Draft, failed: list[StepStatus]) -> str:
    """Which compensations failed and why, and which steps were left uncompensated."""
    detail = "; ".join(
        f"compensation of {s.name} failed: "
        f"{s.compensation.error.message if s.compensation and s.compensation.error else ''}"
        for s in failed
    )
    left = [
        s.name
        for s in draft.status.steps
        if s.phase in MAY_NEED_COMPENSATION and needs_compensation(draft, s)
    ]
    if left:
        detail += "; left uncompensated: " + ", ".join(left)
    return detail


def _undone_in_order(draft: Draft) -> str:
    """The compensated steps in the order they were undone (ties: later steps first)."""
    undone = sorted(
        ((s.compensation and s.compensation.finished_at) or draft.now, -index, s.name)
        for index, s in enumerate(draft.status.steps)
        if s.phase is StepPhase.COMPENSATED
    )
    return ", ".join(name for _, _, name in undone)
