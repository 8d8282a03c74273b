"""One rule for a failed attempt, of an action or of its compensation: retry, or give up."""

from __future__ import annotations

from datetime import timedelta

from kubesaga.engine.commands import attempt_of
from kubesaga.engine.draft import Draft
from kubesaga.models import CommandKind, ErrorInfo, StepStatus, limits


def truncate(error: ErrorInfo) -> ErrorInfo:
    """The error as status keeps it: handlers can send megabytes of message."""
    message = error.message
    if len(message) > limits.MAX_ERROR_MESSAGE_CHARS:
        message = message[: limits.MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return error.model_copy(
        update={"message": message, "type": error.type[: limits.MAX_ERROR_TYPE_CHARS]}
    )


def retry_or_give_up(
    draft: Draft, step: StepStatus, kind: CommandKind, error: ErrorInfo, may_retry: bool = True
) -> bool:
    """Record ``error`` on the attempt of ``kind``; True if another attempt is scheduled.

    A retry needs a retryable error, attempts left under the step's policy for that kind, and
    ``may_retry``. Otherwise the attempt is marked finished and False returned: what giving up
    means for the step (Failed, CompensationFailed) is the caller's to say.
    """
    attempt = attempt_of(step, kind)
    assert attempt is not None
    spec = draft.spec.step(step.name)
    policy = spec.retry if kind is CommandKind.EXECUTE else spec.compensation_policy
    error = truncate(error)
    attempt.error = error
    attempt.attempt_deadline = None
    if not (may_retry and error.retryable and attempt.attempt < policy.max_attempts):
        attempt.finished_at = draft.now
        return False
    delay = policy.delay_before(attempt.attempt + 1)
    if error.retry_after_seconds is not None:  # the handler's wish, within the policy's bound
        delay = min(max(delay, error.retry_after_seconds), policy.max_backoff_seconds)
    attempt.next_attempt_at = draft.now + timedelta(seconds=delay)
    what, reason = (
        (f"step {step.name}", "StepRetrying")
        if kind is CommandKind.EXECUTE
        else (f"compensation of {step.name}", "CompensationRetrying")
    )
    draft.note(
        reason,
        f"{what} attempt {attempt.attempt} failed ({error.type}: {error.message}); "
        f"retrying in {delay:g}s",
        warning=True,
        step=step.name,
    )
    return True
