"""Suspending a saga (``spec.suspend``): nothing new is dispatched until it is resumed.

Suspension is an overlay on the phase the saga had: ``lift`` puts that phase (status.resumePhase)
back at the start of every engine call, so results and timeouts are recorded by the ordinary
rules (a failed attempt schedules its retry, a failed compensation is given up), and ``hold``
puts Suspended on again before anything would be dispatched. A suspended saga takes no
decision at all: no step, retry or compensation starts, compensation does not begin, and the
saga does not finish, even when its last step in flight succeeds. All of that happens on
resume, from what was recorded meanwhile.

The deadline keeps counting while suspended (a saga resumed past its deadline compensates at
once), unless ``spec.suspendPausesDeadline`` moves it by the time spent suspended.
"""

from __future__ import annotations

from kubesaga.engine.draft import Draft
from kubesaga.engine.phase import set_condition
from kubesaga.models import SagaPhase

SUSPENDABLE = (SagaPhase.RUNNING, SagaPhase.COMPENSATING)
"""Phases that dispatch, so can be suspended; a Pending saga is started first, then held."""


def lift(draft: Draft) -> None:
    """Undo the overlay: the saga is in its resume phase for the rest of this call.

    If ``spec.suspend`` was unset, this is the resume: the overlay is gone for good and the
    deadline moves if the saga asked for it.
    """
    status = draft.status
    if status.phase is not SagaPhase.SUSPENDED:
        return
    status.phase = status.resume_phase or SagaPhase.RUNNING
    if draft.spec.suspend:
        return
    suspended_for = draft.now - status.suspended_at if status.suspended_at else None
    moved = ""
    if draft.spec.suspend_pauses_deadline and status.deadline_at and suspended_for:
        status.deadline_at += suspended_for
        moved = f"; deadline moved by {suspended_for.total_seconds():g}s"
    status.resume_phase = None
    status.suspended_at = None
    status.reason = "Resumed"
    status.message = f"resumed {status.phase.value}{moved}"
    set_condition(status, "Finished", "False", status.phase.value, status.message, draft.now)
    draft.note("Resumed", status.message)


def hold(draft: Draft) -> bool:
    """Put the overlay back (or on, the first time) if ``spec.suspend`` says so; True if held.

    Called before every dispatch decision and at the end of each call; a saga in a final phase
    is never held (there is nothing left to dispatch; ``kubectl get`` shows its outcome).
    """
    status = draft.status
    if not draft.spec.suspend or status.phase not in SUSPENDABLE:
        return status.phase is SagaPhase.SUSPENDED
    first = status.suspended_at is None
    status.resume_phase = status.phase
    status.phase = SagaPhase.SUSPENDED
    if first:
        status.suspended_at = draft.now
        status.reason = "Suspended"
        status.message = (
            f"suspended while {status.resume_phase.value}: nothing is dispatched until "
            "spec.suspend is unset (kubesaga resume)"
        )
        set_condition(status, "Finished", "False", "Suspended", status.message, draft.now)
        draft.note("Suspended", status.message)
    return True


def ignored(draft: Draft, spec_changed: bool) -> None:
    """Suspending a saga that already ended does nothing; say so once, when it is asked."""
    if draft.spec.suspend and spec_changed and draft.status.phase.is_final:
        draft.note(
            "SuspendIgnored",
            f"suspend requested, but the saga already ended {draft.status.phase.value}; "
            "nothing is dispatched anyway",
        )
