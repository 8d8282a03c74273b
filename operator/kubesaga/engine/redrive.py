"""Redrive (``spec.redrive``): after a human fixed what made a compensation fail, try again.

Only a saga Failed because a compensation failed after its retries can be redriven: Failed
means nothing else in this engine but an invalid spec or status (a forward step that fails ends
the saga Compensated, or Compensating, never Failed). A redrive puts each step whose
compensation failed back to the phase it had before its compensation (keeping that
compensation in ``compensationHistory``) and the saga back to Compensating; the ordinary rules
then run exactly those compensations again, with a fresh retry budget and fresh dispatch ids,
and after them the ones they blocked, in reverse dependency order. Outputs are never touched.

``spec.redrive`` is a counter, so ``kubectl patch`` works as well as ``kubesaga redrive``: a
value above ``status.observedRedrive`` is a request, acted on (or refused with a Warning Event
saying why) once.
"""

from __future__ import annotations

from kubesaga.engine.draft import Draft
from kubesaga.engine.phase import REFUSED_REASONS, set_condition
from kubesaga.models import SagaPhase, SagaStatus, StepPhase, StepStatus, limits

REDRIVABLE_REASON = "CompensationFailed"
"""The reason of the one kind of Failed saga a redrive can help."""


def refusal(status: SagaStatus | None) -> str | None:
    """Why a saga in this state cannot be redriven, or None if it can.

    The engine and both clients use it, so ``kubesaga redrive`` refuses exactly what the
    operator would refuse, before changing anything.
    """
    if status is None or status.phase is SagaPhase.PENDING:
        return "the saga has not started yet; there is nothing to redrive"
    phase, reason = status.phase, status.reason
    if phase is SagaPhase.FAILED and reason == REDRIVABLE_REASON:
        return None
    if phase is SagaPhase.FAILED and reason in REFUSED_REASONS:
        return (
            f"the saga failed as {reason}: nothing ran that a redrive could retry; "
            "fix the manifest and create a new Saga"
        )
    if phase is SagaPhase.COMPLETED:
        return (
            "the saga Completed: every step succeeded and there is nothing to redrive "
            "(kubesaga compensate undoes it)"
        )
    if phase is SagaPhase.COMPENSATED:
        return (
            "the saga was Compensated: it was rolled back cleanly and there is nothing to redrive"
        )
    if phase is SagaPhase.SUSPENDED:
        return (
            "the saga is Suspended; only a saga Failed because a compensation failed can be "
            "redriven (kubesaga resume lets it go on)"
        )
    return (
        f"the saga is {phase.value} (reason {reason}); only a saga Failed because a "
        "compensation failed can be redriven"
    )


def requested(draft: Draft) -> None:
    """Act on a new ``spec.redrive``: reopen the failed compensations, or refuse and say why."""
    wanted, status = draft.spec.redrive, draft.status
    if wanted <= (status.observed_redrive or 0):
        return
    # A suspended saga is in its resume phase during the call (suspend.lift): judge it as seen.
    seen = status
    if status.suspended_at is not None:
        seen = status.model_copy(update={"phase": SagaPhase.SUSPENDED})
    why = refusal(seen)
    status.observed_redrive = wanted
    if why is not None:
        draft.note("RedriveRefused", f"redrive {wanted} refused: {why}", warning=True)
        return
    _reopen(draft, wanted)


def refuse_if_requested(draft: Draft) -> None:
    """A redrive asked of a saga the engine refused to run (InvalidSpec, InvalidStatus)."""
    if draft.spec.redrive > (draft.status.observed_redrive or 0):
        draft.status.observed_generation = draft.saga.generation
        requested(draft)


def _reopen(draft: Draft, number: int) -> None:
    status = draft.status
    failed = [s for s in status.steps if s.phase is StepPhase.COMPENSATION_FAILED]
    for step in failed:
        _keep_history(step)
    names = ", ".join(s.name for s in failed)
    status.phase = SagaPhase.COMPENSATING
    status.reason = "Redriven"
    status.message = f"redrive {number}: compensating {names} again, then what they blocked"
    status.finished_at = None
    set_condition(status, "Finished", "False", "Redriven", status.message, draft.now)
    draft.note("Redriven", status.message)


def _keep_history(step: StepStatus) -> None:
    """Move the failed compensation to the history; the step is as before it was compensated."""
    comp = step.compensation
    assert comp is not None
    kept = comp.model_copy(deep=True)
    kept.next_attempt_at = None
    kept.attempt_deadline = None
    if kept.error is not None and len(kept.error.message) > limits.MAX_HISTORY_ERROR_CHARS:
        message = kept.error.message[: limits.MAX_HISTORY_ERROR_CHARS - 1] + "…"
        kept.error = kept.error.model_copy(update={"message": message})
    step.compensation_history = [*(step.compensation_history or []), kept]
    step.compensation = None
    # Failed steps are compensated only with compensateOnFailure; succeeded ones had no error.
    step.phase = StepPhase.FAILED if step.execution.error is not None else StepPhase.SUCCEEDED
