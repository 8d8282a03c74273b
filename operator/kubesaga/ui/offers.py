"""Which actions a saga page offers, from the same rules the clients apply before they patch.

A button the server would refuse is a button not drawn: the approval buttons come from
``client.approvals.check`` (the engine's ``approval.refusal`` plus "answered already"), Redrive
from ``client.resource.redrive_patch`` (the engine's ``redrive.refusal`` plus "a redrive is
pending" and the redrive limit). So the page, the clients and the operator cannot disagree;
the POST endpoints still ask the client, which checks again against the newest object.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubesaga.client import approvals, resource
from kubesaga.client.errors import ApprovalRefused, SagaNotRedrivable
from kubesaga.client.saga import Saga
from kubesaga.models import SagaPhase, StepPhase
from kubesaga.store import SagaObject

NONE: dict[str, Any] = {"approve": [], "suspend": False, "resume": False, "redrive": False}
"""What a read-only UI, a user without patch rights or an unparsable saga is offered."""

SUSPENDABLE = (SagaPhase.RUNNING, SagaPhase.COMPENSATING)


def offered(obj: SagaObject, permitted: bool) -> dict[str, Any]:
    """The actions to draw: ``approve`` (the steps that can take an answer now, Approve and
    Reject alike), ``suspend``, ``resume``, ``redrive``; nothing unless ``permitted``."""
    if not permitted:
        return dict(NONE)
    try:
        saga = Saga.of(obj)
    except ValidationError:
        return dict(NONE)
    waiting = [
        s.name
        for s in (saga.status.steps if saga.status else [])
        if s.phase is StepPhase.AWAITING_APPROVAL and _answerable(saga, s.name)
    ]
    return {
        "approve": waiting,
        "suspend": not saga.spec.suspend and saga.phase in SUSPENDABLE,
        "resume": saga.spec.suspend,
        "redrive": _redrivable(saga),
    }


def _answerable(saga: Saga, step: str) -> bool:
    try:
        approvals.check(saga, step)
    except ApprovalRefused:
        return False
    return True


def _redrivable(saga: Saga) -> bool:
    try:
        resource.redrive_patch(saga)
    except SagaNotRedrivable:
        return False
    return True
