"""Forward progress: a step's outcome recorded, and the steps that became ready dispatched."""

from __future__ import annotations

import json

from kubesaga.engine import approval, phase
from kubesaga.engine.draft import Draft
from kubesaga.engine.retry import retry_or_give_up
from kubesaga.models import (
    CommandKind,
    ErrorInfo,
    Result,
    ResultStatus,
    SagaPhase,
    StepPhase,
    StepStatus,
    limits,
)


def start(draft: Draft) -> None:
    draft.transitions.append(
        phase.start(
            draft.status,
            draft.graph.order,
            draft.saga.generation,
            draft.spec.deadline_seconds,
            draft.now,
        )
    )


def record_execute(draft: Draft, step: StepStatus, result: Result) -> None:
    """The action's result: success unless its output is over the limit, else a failure."""
    if result.status is ResultStatus.SUCCEEDED:
        output = result.output or {}
        size = len(json.dumps(output, separators=(",", ":")).encode())
        if size <= limits.MAX_OUTPUT_BYTES:
            succeed(draft, step, output)
            return
        error = ErrorInfo(
            type="OutputTooLarge",
            message=(
                f"step output is {size} bytes, over the limit of {limits.MAX_OUTPUT_BYTES}; "
                "return a reference (an id, a URL) instead of the data"
            ),
            retryable=False,
        )
    else:
        assert result.error is not None
        error = result.error
    fail_attempt(draft, step, error)


def succeed(draft: Draft, step: StepStatus, output: dict[str, object]) -> None:
    step.phase = StepPhase.SUCCEEDED
    step.output = output
    execution = step.execution
    execution.error = None
    execution.finished_at = draft.now
    execution.attempt_deadline = None
    draft.note("StepSucceeded", f"step {step.name} succeeded", step=step.name)


def fail_attempt(draft: Draft, step: StepStatus, error: ErrorInfo) -> None:
    """An attempt failed (or timed out): retry under the policy, or fail the step.

    No retry once the saga is compensating: the step's work would only be undone again.
    """
    running = draft.status.phase is SagaPhase.RUNNING
    if retry_or_give_up(draft, step, CommandKind.EXECUTE, error, may_retry=running):
        return
    step.phase = StepPhase.FAILED
    execution = step.execution
    assert execution.error is not None
    error = execution.error
    if error.retryable and execution.attempt >= draft.spec.step(step.name).retry.max_attempts:
        why = f"after {execution.attempt} attempts"
    elif error.retryable:
        why = "(no retry while compensating)"
    else:
        why = "permanently"
    draft.note(
        "StepFailed",
        f"step {step.name} failed {why}: {error.type}: {error.message}",
        warning=True,
        step=step.name,
    )


def compensation_cause(draft: Draft) -> tuple[str, str] | None:
    """Why a running saga must be rolled back now (reason, message), or None."""
    if draft.spec.compensate:
        return "CompensationRequested", "compensation requested"
    for step in draft.status.steps:
        if step.phase is StepPhase.FAILED:
            err = step.error
            detail = f": {err.type}: {err.message}" if err else ""
            return "StepFailed", f"step {step.name} failed{detail}"
    deadline = draft.status.deadline_at
    if deadline is not None and deadline <= draft.now:
        return "DeadlineExceeded", f"saga deadline of {draft.spec.deadline_seconds:g}s passed"
    return None


def dispatch_ready(draft: Draft) -> None:
    """First attempts of steps whose dependencies all succeeded, and retries now due."""
    by_name = {s.name: s for s in draft.status.steps}
    for step in draft.status.steps:
        if step.phase is StepPhase.PENDING:
            deps = draft.graph.deps[step.name]
            if all(by_name[d].phase is StepPhase.SUCCEEDED for d in deps):
                if draft.spec.step(step.name).approval is not None:
                    approval.request(draft, step)
                    continue
                step.phase = StepPhase.RUNNING
                step.started_at = draft.now
                draft.dispatch(step, CommandKind.EXECUTE)
        elif step.phase is StepPhase.RUNNING and draft.due(step.execution.next_attempt_at):
            draft.dispatch(step, CommandKind.EXECUTE)
