"""Which actions a saga page offers (kubesaga.ui.offers): the clients' own refusal rules.

A button is drawn only for what the client (and so the operator) would accept now; a user the
UI may not act for, or a read-only UI, is offered nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubesaga.store import SagaObject
from kubesaga.ui.offers import NONE, offered

STEPS = [{"name": "a", "action": "x.a"}, {"name": "gate", "approval": {}}]


def saga(phase: str, steps: dict[str, str], reason: str = "", **spec: Any) -> SagaObject:
    status = {
        "phase": phase,
        "reason": reason,
        "steps": [{"name": n, "phase": p} for n, p in steps.items()],
    }
    return SagaObject(
        {
            "metadata": {"namespace": "ns", "name": "s", "uid": "u", "generation": 1},
            "spec": {"steps": STEPS, **spec},
            "status": status,
        }
    )


def test_a_waiting_approval_step_offers_approve_and_reject_and_suspend() -> None:
    obj = saga("Running", {"a": "Succeeded", "gate": "AwaitingApproval"})
    assert offered(obj, True) == {
        "approve": ["gate"],
        "suspend": True,
        "resume": False,
        "redrive": False,
    }


def test_an_answered_step_is_not_offered_again() -> None:
    answer = [{"step": "gate", "approved": True, "by": "alice"}]
    obj = saga("Running", {"a": "Succeeded", "gate": "AwaitingApproval"}, approvals=answer)
    assert offered(obj, True)["approve"] == []


def test_a_suspended_saga_offers_resume_only() -> None:
    obj = saga("Suspended", {"a": "Succeeded", "gate": "AwaitingApproval"}, suspend=True)
    actions = offered(obj, True)
    assert (actions["suspend"], actions["resume"], actions["redrive"]) == (False, True, False)


def test_a_compensating_saga_can_be_suspended() -> None:
    obj = saga("Compensating", {"a": "Compensating", "gate": "Failed"})
    assert offered(obj, True)["suspend"] is True


@pytest.mark.parametrize(
    ("phase", "reason", "redrive"),
    [
        ("Failed", "CompensationFailed", True),
        ("Failed", "InvalidSpec", False),
        ("Completed", "", False),
        ("Compensated", "", False),
    ],
)
def test_redrive_follows_the_engine_refusal_rule(phase: str, reason: str, redrive: bool) -> None:
    obj = saga(phase, {"a": "CompensationFailed", "gate": "Failed"}, reason=reason)
    actions = offered(obj, True)
    assert actions["redrive"] is redrive
    assert actions["suspend"] is False  # a final saga has nothing to suspend


def test_a_pending_redrive_is_not_offered_twice() -> None:
    obj = saga("Failed", {"a": "CompensationFailed", "gate": "Failed"}, "CompensationFailed")
    obj.raw["spec"]["redrive"] = 1
    assert offered(obj, True)["redrive"] is False


def test_nothing_is_offered_without_permission_or_to_a_saga_that_does_not_parse() -> None:
    waiting = saga("Running", {"a": "Succeeded", "gate": "AwaitingApproval"})
    assert offered(waiting, False) == NONE
    broken = SagaObject({"metadata": {"name": "s"}, "spec": {"steps": "no"}, "status": None})
    assert offered(broken, True) == NONE
