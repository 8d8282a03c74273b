"""Answering approval steps, for both clients: the checks and the patch, written once.

The answer goes into ``spec.approvals`` (append-only; the CRD refuses an answer for a step that
is not waiting, and any change or removal of one), so the operator stays the only writer of
status and plain ``kubectl patch`` works too. ``by`` is who the apiserver says the caller is
(a SelfSubjectReview), unless the caller names someone else on purpose (another system acting
for a person).
"""

from __future__ import annotations

from typing import Any

from kubesaga.client.errors import ApprovalRefused, SagaClientError, SagaInvalid
from kubesaga.client.saga import Saga
from kubesaga.engine.approval import refusal
from kubesaga.models import ApprovalAnswer

SELF_SUBJECT_REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


def check(saga: Saga, step: str) -> None:
    """Raise ``ApprovalRefused`` saying why ``step`` of ``saga`` cannot be answered now.

    The same words the operator's ApprovalRefused Event uses (``engine.approval.refusal``).
    """
    where = f"saga {saga.namespace}/{saga.name}"
    try:
        spec_step = saga.spec.step(step)
    except KeyError:
        raise _refused(saga, f"{where} has no step {step!r}") from None
    if spec_step.approval is None:
        raise _refused(saga, f"step {step} of {where} is not an approval step")
    why = refusal(saga.status, step) if saga.status is not None else None
    if why is not None:
        raise _refused(saga, f"cannot answer step {step} of {where}: {why}")
    given = saga.spec.answer(step)
    if given is not None:
        verb = "approved" if given.approved else "rejected"
        raise _refused(saga, f"step {step} of {where} was already {verb} by {given.by}")
    if saga.status is None:
        raise _refused(saga, f"{where} has not started yet: step {step} is not waiting")


def answer_patch(saga: Saga, answer: ApprovalAnswer) -> list[dict[str, Any]]:
    """The JSON patch appending ``answer`` (the whole list when there is none yet)."""
    value = answer.to_wire()
    if saga.spec.approvals:
        return [{"op": "add", "path": "/spec/approvals/-", "value": value}]
    return [{"op": "add", "path": "/spec/approvals", "value": [value]}]


def username(review: Any) -> str:
    """The user name in a SelfSubjectReview answer (a dict or a client model)."""
    if isinstance(review, dict):
        return str(((review.get("status") or {}).get("userInfo") or {}).get("username") or "")
    info = getattr(getattr(review, "status", None), "user_info", None)
    return str(getattr(info, "username", "") or "")


def refused_by_api(error: SagaClientError, saga: Saga, step: str) -> SagaClientError:
    """The apiserver's refusal of an answer (its CRD rules, e.g. a step no longer waiting when
    the answer arrived) as ``ApprovalRefused`` with its message; other errors as they are."""
    if not isinstance(error, SagaInvalid):
        return error
    return _refused(
        saga, f"cannot answer step {step} of saga {saga.namespace}/{saga.name}: {error.message}"
    )


def _refused(saga: Saga, message: str) -> ApprovalRefused:
    return ApprovalRefused(message, namespace=saga.namespace, name=saga.name)
