"""Approval steps in the pure engine: wait, approve, reject, time out, and never twice."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kubesaga.engine import Verdict
from kubesaga.engine.approval import refusal
from kubesaga.models import ApprovalAnswer, ApprovalOutcome, CommandKind, SagaPhase, StepPhase
from tests.unit.sim import Sim, spec_of, step

pytestmark = pytest.mark.unit

P = StepPhase


def gate(name: str, timeout: float | None = None, **kw: Any) -> dict[str, Any]:
    approval = {} if timeout is None else {"timeoutSeconds": timeout}
    return {"name": name, "approval": approval, **kw}


def answer(sim: Sim, name: str, approved: bool, by: str = "alice", reason: str = "ok") -> None:
    """Append an answer to spec.approvals (a new generation) and let the engine see it."""
    given_ = ApprovalAnswer(step=name, approved=approved, by=by, reason=reason)
    sim.spec = sim.spec.model_copy(update={"approvals": [*sim.spec.approvals, given_]})
    sim.generation += 1
    sim.reconcile()


def reasons(sim: Sim) -> list[str]:
    return [t.reason for d in sim.decisions for t in d.transitions]


def shop(timeout: float | None = None) -> Sim:
    sim = Sim(spec_of(step("reserve"), step("charge"), gate("manager", timeout), step("ship")))
    sim.reconcile()
    sim.answer("reserve")
    sim.answer("charge")
    return sim


def test_an_approval_step_waits_and_nothing_is_published_for_it() -> None:
    sim = shop(timeout=60)
    assert sim.phases()["manager"] is P.AWAITING_APPROVAL
    assert sim.sent_names() == ["reserve", "charge"]
    record = sim.step("manager").approval
    assert record is not None and record.outcome is None
    assert record.timeout_at is not None and sim.decisions[-1].wake_at == record.timeout_at
    assert sim.status is not None and sim.status.current_step == "manager"
    assert "ApprovalRequested" in reasons(sim)


def test_approved_step_succeeds_with_who_and_why_as_its_output() -> None:
    sim = shop()
    answer(sim, "manager", True, by="alice", reason="under budget")
    st_ = sim.step("manager")
    assert st_.phase is P.SUCCEEDED
    assert st_.output == {"approved": True, "by": "alice", "reason": "under budget"}
    assert st_.approval is not None and st_.approval.outcome is ApprovalOutcome.APPROVED
    assert (st_.approval.by, st_.approval.reason) == ("alice", "under budget")
    assert sim.command("ship").outputs["manager"]["by"] == "alice"
    sim.answer("ship")
    assert sim.phase() is SagaPhase.COMPLETED
    messages = [t.message for d in sim.decisions for t in d.transitions]
    assert "step manager approved by alice: under budget" in messages


def test_rejected_step_fails_and_earlier_steps_are_compensated_in_reverse_order() -> None:
    sim = shop()
    answer(sim, "manager", False, by="bob", reason="too expensive")
    assert sim.phases()["manager"] is P.FAILED
    assert sim.error("manager").type == "ApprovalRejected"
    assert sim.phase() is SagaPhase.COMPENSATING
    assert "rejected by bob: too expensive" in (sim.status.message if sim.status else "")
    assert sim.sent_names(CommandKind.COMPENSATE) == ["charge"]
    sim.undo("charge")
    sim.undo("reserve")
    assert sim.phase() is SagaPhase.COMPENSATED
    assert sim.phases()["ship"] is P.SKIPPED
    assert "compensated: charge, reserve" in (sim.status.message if sim.status else "")


def test_no_answer_by_the_timeout_fails_the_step_and_compensates() -> None:
    sim = shop(timeout=30)
    sim.advance(29)
    assert sim.phases()["manager"] is P.AWAITING_APPROVAL
    sim.advance(1)
    assert sim.phases()["manager"] is P.FAILED
    assert sim.error("manager").type == "ApprovalTimedOut"
    record = sim.step("manager").approval
    assert record is not None and record.outcome is ApprovalOutcome.TIMED_OUT
    assert sim.phase() is SagaPhase.COMPENSATING
    assert "ApprovalTimedOut" in reasons(sim)


def test_an_answer_seen_with_a_due_timeout_wins() -> None:
    """The apiserver accepted it while the step waited: the operator had not timed it out."""
    sim = shop(timeout=30)
    sim.now = sim.now.replace(minute=5)
    answer(sim, "manager", True)
    assert sim.phases()["manager"] is P.SUCCEEDED


def test_a_saga_compensating_for_another_reason_cancels_the_wait() -> None:
    sim = Sim(spec_of(step("a"), gate("ok", dependsOn=["a"]), step("b", dependsOn=["a"])))
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    assert sim.phases()["ok"] is P.SKIPPED
    record = sim.step("ok").approval
    assert record is not None and record.outcome is ApprovalOutcome.CANCELLED
    assert sim.status is not None
    assert refusal(sim.status, "ok") == "step ok no longer waits: the saga is Compensating"


def test_refusals_say_why_a_step_cannot_be_answered() -> None:
    sim = Sim(spec_of(step("a"), gate("ok")))
    sim.reconcile()
    assert sim.status is not None
    assert "not waiting yet" in (refusal(sim.status, "ok") or "")
    assert "no step 'nope'" in (refusal(sim.status, "nope") or "")
    sim.answer("a")
    assert refusal(sim.status, "ok") is None
    answer(sim, "ok", True, by="carol", reason="fine")
    assert sim.status is not None
    assert "already ended Completed" in (refusal(sim.status, "ok") or "")


def test_a_second_answer_is_refused_and_changes_nothing() -> None:
    sim = shop()
    answer(sim, "manager", True, by="alice")
    before = sim.step("manager").model_copy(deep=True)
    answer(sim, "manager", False, by="mallory", reason="changed my mind")
    assert sim.step("manager") == before
    refused = [t for t in sim.decisions[-1].transitions if t.reason == "ApprovalRefused"]
    assert len(refused) == 1
    assert "already approved by alice" in refused[0].message


def test_a_spec_step_has_exactly_one_of_action_and_approval() -> None:
    with pytest.raises(ValidationError, match="exactly one of action or approval"):
        spec_of({"name": "x"})
    with pytest.raises(ValidationError, match="exactly one of action or approval"):
        spec_of({"name": "x", "action": "a", "approval": {}})
    with pytest.raises(ValidationError, match="cannot have compensation"):
        spec_of(gate("x", compensation="undo"))


ANSWERS = st.lists(
    st.tuples(
        st.sampled_from(["a", "gate1", "gate2", "z"]),
        st.booleans(),
        st.sampled_from(["alice", "bob"]),
        st.integers(0, 40),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(ANSWERS, ANSWERS)
def test_an_approval_is_answered_at_most_once_whatever_arrives(
    early: list[tuple[str, bool, str, int]],
    answers: list[tuple[str, bool, str, int]],
) -> None:
    """Any answers in any order (before the steps wait, duplicates, for steps that are no
    approvals, after a timeout): the outcome an approval step records never changes, and it is
    the first answer given while the step waited, or its timeout."""
    sim = Sim(
        spec_of(
            step("a"),
            gate("gate1", timeout=30, dependsOn=["a"]),
            gate("gate2", dependsOn=["a"]),
            step("z", dependsOn=["gate1", "gate2"]),
        )
    )
    sim.reconcile()
    for name, approved, by, _ in early:  # before any step waits: never counted
        answer(sim, name, approved, by=by)
    sim.answer("a")
    recorded: dict[str, Any] = {}
    for name, approved, by, wait in answers:
        waiting = sim.phases().get(name) is P.AWAITING_APPROVAL
        sim.advance(wait)
        waiting_now = sim.phases().get(name) is P.AWAITING_APPROVAL
        answer(sim, name, approved, by=by)
        for gate_name in ("gate1", "gate2"):
            record = sim.step(gate_name).approval
            if record is None or record.outcome is None:
                continue
            if gate_name in recorded:
                assert record == recorded[gate_name], "a recorded answer changed"
            else:
                recorded[gate_name] = record.model_copy(deep=True)
                if record.outcome in (ApprovalOutcome.APPROVED, ApprovalOutcome.REJECTED):
                    assert gate_name == name and waiting and waiting_now
                    assert (record.by, record.outcome is ApprovalOutcome.APPROVED) == (
                        by,
                        approved,
                    )
    for gate_name in ("gate1", "gate2"):
        record = sim.step(gate_name).approval
        if record is not None and record.outcome is ApprovalOutcome.APPROVED:
            assert sim.phases()[gate_name] in (P.SUCCEEDED, P.COMPENSATED)


def test_an_answer_given_before_the_step_waited_never_counts() -> None:
    """Only a spec written past the CRD's rules can hold one; it is refused, not kept for later."""
    sim = Sim(spec_of(step("a"), gate("ok", timeout=60)))
    sim.reconcile()
    answer(sim, "ok", True, by="early-bird")
    assert "not waiting yet" in sim.decisions[-1].transitions[0].message
    sim.answer("a")
    assert sim.phases()["ok"] is P.AWAITING_APPROVAL
    sim.advance(60)
    assert sim.phases()["ok"] is P.FAILED
    assert sim.error("ok").type == "ApprovalTimedOut"


def test_an_answer_is_taken_when_only_a_duplicate_result_comes_with_it() -> None:
    """A restarted operator may get a redelivered result before it lists the saga: the new
    generation is observed in that call, so the answer must be taken in it too."""
    sim = shop()
    reserve = sim.result_for(sim.command("charge"))
    given_ = ApprovalAnswer(step="manager", approved=True, by="alice")
    sim.spec = sim.spec.model_copy(update={"approvals": [given_]})
    sim.generation += 1
    decision = sim.deliver(reserve)
    assert decision.verdict is Verdict.DUPLICATE
    assert sim.phases()["manager"] is P.SUCCEEDED
    assert sim.sent_names()[-1] == "ship"
