"""One test per rule of suspend/resume and redrive (docs/operations.md), on the pure engine."""

from __future__ import annotations

from datetime import timedelta

from kubesaga.engine.redrive import refusal
from kubesaga.models import CommandKind, SagaPhase, SagaStatus, StepPhase
from tests.unit.sim import T0, Sim, spec_of, step

EXEC, COMP = CommandKind.EXECUTE, CommandKind.COMPENSATE


def order_saga(**kw: object) -> Sim:
    return Sim(spec_of(step("order"), step("inventory"), step("payment"), **kw))


def reasons(sim: Sim) -> list[str]:
    return [t.reason for t in sim.decisions[-1].transitions]


# -- suspend ----------------------------------------------------------------------------------


def test_suspending_a_running_saga_records_the_phase_it_resumes_to_and_dispatches_nothing() -> None:
    sim = order_saga()
    sim.reconcile()
    decision = sim.suspend()
    assert sim.phase() is SagaPhase.SUSPENDED
    assert sim.status is not None and sim.status.resume_phase is SagaPhase.RUNNING
    assert sim.status.suspended_at == T0
    assert "Suspended" in reasons(sim) and not decision.commands
    assert [c.type for c in sim.status.conditions if c.reason == "Suspended"] == ["Finished"]


def test_an_attempt_in_flight_is_recorded_while_suspended_but_its_successor_waits() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.suspend()
    decision = sim.answer("order")
    assert sim.step("order").phase is StepPhase.SUCCEEDED
    assert sim.phase() is SagaPhase.SUSPENDED and not decision.commands
    assert sim.sent_names() == ["order"]
    sim.suspend(False)
    assert sim.phase() is SagaPhase.RUNNING and sim.sent_names() == ["order", "inventory"]
    assert reasons(sim)[0] == "Resumed"


def test_a_saga_created_suspended_starts_but_dispatches_nothing_until_resumed() -> None:
    sim = order_saga(suspend=True)
    decision = sim.reconcile()
    assert sim.phase() is SagaPhase.SUSPENDED and not decision.commands
    assert sim.phases() == dict.fromkeys(["order", "inventory", "payment"], StepPhase.PENDING)
    sim.suspend(False)
    assert sim.sent_names() == ["order"]


def test_a_retry_due_while_suspended_waits_for_the_resume_and_sets_no_timer() -> None:
    sim = Sim(spec_of(step("order", retry={"maxAttempts": 3, "backoffSeconds": 1})))
    sim.reconcile()
    sim.suspend()
    decision = sim.answer("order", ok=False, retryable=True)
    assert sim.step("order").next_attempt_at is not None
    assert decision.wake_at is None, "a held retry must not wake the operator"
    sim.advance(30)
    assert sim.sent_names() == ["order"]
    sim.suspend(False)
    assert sim.sent_names() == ["order", "order"] and sim.step("order").attempt == 2


def test_a_timeout_is_still_recorded_while_suspended() -> None:
    sim = Sim(spec_of(step("order", timeoutSeconds=5, retry={"maxAttempts": 2})))
    sim.reconcile()
    decision = sim.suspend()
    assert decision.wake_at == T0 + timedelta(seconds=5)
    sim.advance(6)
    assert sim.error("order").type == "Timeout" and sim.phase() is SagaPhase.SUSPENDED
    assert sim.sent_names() == ["order"]


def test_a_failure_while_suspended_starts_compensation_only_on_resume() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.answer("order")
    sim.suspend()
    sim.answer("inventory", ok=False)
    assert sim.phase() is SagaPhase.SUSPENDED and sim.sent_names(COMP) == []
    sim.suspend(False)
    assert sim.phase() is SagaPhase.COMPENSATING and sim.sent_names(COMP) == ["order"]


def test_a_compensating_saga_suspends_and_resumes_compensating() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.answer("order")
    sim.answer("inventory")
    sim.answer("payment", ok=False)
    assert sim.sent_names(COMP) == ["inventory"]
    sim.suspend()
    assert sim.status is not None and sim.status.resume_phase is SagaPhase.COMPENSATING
    sim.undo("inventory")
    assert sim.sent_names(COMP) == ["inventory"], "the next compensation waits"
    sim.suspend(False)
    assert sim.phase() is SagaPhase.COMPENSATING and sim.sent_names(COMP) == ["inventory", "order"]


def test_the_last_success_while_suspended_completes_the_saga_only_on_resume() -> None:
    sim = Sim(spec_of(step("order")))
    sim.reconcile()
    sim.suspend()
    sim.answer("order")
    assert sim.phase() is SagaPhase.SUSPENDED
    sim.suspend(False)
    assert sim.phase() is SagaPhase.COMPLETED


def test_the_deadline_keeps_counting_while_suspended_by_default() -> None:
    sim = order_saga(deadlineSeconds=60)
    sim.reconcile()
    sim.suspend()
    assert sim.decisions[-1].wake_at is None, "a suspended saga's deadline wakes nobody"
    sim.advance(120)
    assert sim.phase() is SagaPhase.SUSPENDED
    sim.suspend(False)
    assert sim.phase() is SagaPhase.COMPENSATING and sim.status is not None
    assert sim.status.reason == "DeadlineExceeded"


def test_suspend_pauses_deadline_moves_the_deadline_by_the_time_suspended() -> None:
    sim = order_saga(deadlineSeconds=60, suspendPausesDeadline=True)
    sim.reconcile()
    sim.advance(10)
    sim.suspend()
    sim.advance(120)
    sim.suspend(False)
    assert sim.phase() is SagaPhase.RUNNING and sim.status is not None
    assert sim.status.deadline_at == T0 + timedelta(seconds=60 + 120)
    sim.answer("order")
    assert sim.sent_names() == ["order", "inventory"]


def test_suspending_a_finished_saga_changes_nothing_and_says_so() -> None:
    sim = Sim(spec_of(step("order")))
    sim.reconcile()
    sim.answer("order")
    sim.suspend()
    assert sim.phase() is SagaPhase.COMPLETED and "SuspendIgnored" in reasons(sim)


def test_compensate_requested_while_suspended_begins_on_resume() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.answer("order")
    sim.suspend()
    sim.set_spec(compensate=True)
    assert sim.phase() is SagaPhase.SUSPENDED and sim.sent_names(COMP) == []
    sim.suspend(False)
    assert sim.phase() is SagaPhase.COMPENSATING
    assert sim.status is not None and sim.status.reason == "CompensationRequested"


# -- redrive ----------------------------------------------------------------------------------


def failed_saga() -> Sim:
    """order -> inventory -> payment; payment fails, inventory's refund fails: Failed."""
    sim = order_saga()
    sim.reconcile()
    sim.answer("order", output={"order": 7})
    sim.answer("inventory", output={"held": 2})
    sim.answer("payment", ok=False)
    sim.undo("inventory", ok=False, error="gateway down")
    assert sim.phase() is SagaPhase.FAILED and sim.status is not None
    assert sim.status.reason == "CompensationFailed"
    return sim


def test_redrive_retries_the_failed_compensation_then_the_one_it_blocked() -> None:
    sim = failed_saga()
    first = sim.command("inventory", COMP).dispatch_id
    sim.redrive()
    assert sim.phase() is SagaPhase.COMPENSATING and reasons(sim) == ["Redriven"]
    again = sim.command("inventory", COMP)
    assert again.dispatch_id != first and again.attempt == 1
    assert again.output == {"held": 2}, "the compensation gets the recorded output"
    assert sim.sent_names(COMP) == ["inventory", "inventory"]
    sim.undo("inventory")
    assert sim.sent_names(COMP) == ["inventory", "inventory", "order"]
    sim.undo("order")
    assert sim.phase() is SagaPhase.COMPENSATED


def test_redrive_keeps_outputs_and_the_given_up_compensation_in_history() -> None:
    sim = failed_saga()
    sim.redrive()
    inventory = sim.step("inventory")
    assert inventory.output == {"held": 2} and sim.step("order").output == {"order": 7}
    assert inventory.compensation_history is not None
    [kept] = inventory.compensation_history
    assert kept.error is not None and kept.error.message == "gateway down"
    assert sim.status is not None and sim.status.observed_redrive == 1


def test_a_late_result_of_the_given_up_compensation_is_refused_after_a_redrive() -> None:
    sim = failed_saga()
    old = sim.command("inventory", COMP)
    sim.redrive()
    decision = sim.deliver(sim.result_for(old))
    assert decision.verdict.value == "rejected"
    assert sim.step("inventory").phase is StepPhase.COMPENSATING


def test_a_redrive_whose_compensation_fails_again_ends_failed_and_can_be_redriven_again() -> None:
    sim = failed_saga()
    sim.redrive()
    sim.undo("inventory", ok=False, error="still down")
    assert sim.phase() is SagaPhase.FAILED
    sim.redrive()
    sim.undo("inventory")
    sim.undo("order")
    assert sim.phase() is SagaPhase.COMPENSATED
    history = sim.step("inventory").compensation_history or []
    assert [h.error.message for h in history if h.error] == ["gateway down", "still down"]


def test_redrive_of_a_completed_saga_is_refused_with_a_warning_and_changes_nothing_else() -> None:
    sim = Sim(spec_of(step("order")))
    sim.reconcile()
    sim.answer("order")
    before = sim.status
    decision = sim.redrive()
    [warning] = decision.transitions
    assert warning.reason == "RedriveRefused" and warning.warning
    assert "Completed" in warning.message and not decision.commands
    assert sim.status is not None and before is not None
    assert sim.status.model_copy(update={"observed_redrive": None, "observed_generation": 1}) == (
        before.model_copy(update={"observed_generation": 1})
    )


def test_redrive_of_a_running_saga_is_refused_and_not_remembered_for_later() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.redrive()
    assert reasons(sim) == ["RedriveRefused"]
    sim.answer("order")
    sim.answer("inventory")
    sim.answer("payment", ok=False)
    sim.undo("inventory", ok=False)
    assert sim.phase() is SagaPhase.FAILED, "the refused redrive did not reopen it"


def test_redrive_of_an_invalid_spec_is_refused() -> None:
    sim = Sim(spec_of(step("a", dependsOn=["b"]), step("b", dependsOn=["a"])))
    sim.reconcile()
    assert sim.status is not None and sim.status.reason == "InvalidSpec"
    sim.redrive()
    assert reasons(sim) == ["RedriveRefused"] and sim.phase() is SagaPhase.FAILED
    assert sim.status.observed_generation == sim.generation


def test_redrive_of_a_suspended_saga_is_refused_as_suspended() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.suspend()
    [refused] = sim.redrive().transitions
    assert refused.reason == "RedriveRefused" and "the saga is Suspended" in refused.message
    assert sim.phase() is SagaPhase.SUSPENDED


def test_redrive_while_suspended_reopens_but_dispatches_on_resume() -> None:
    sim = failed_saga()
    sim.set_spec(suspend=True, redrive=1)
    assert sim.phase() is SagaPhase.SUSPENDED and sim.sent_names(COMP) == ["inventory"]
    sim.suspend(False)
    assert sim.sent_names(COMP) == ["inventory", "inventory"]


def test_the_refusal_reasons_name_what_the_saga_is() -> None:
    never_started = refusal(None)
    assert never_started is not None and "not started" in never_started
    for phase, reason, words in [
        (SagaPhase.COMPLETED, "Completed", "Completed"),
        (SagaPhase.COMPENSATED, "StepFailed", "Compensated"),
        (SagaPhase.FAILED, "InvalidSpec", "InvalidSpec"),
        (SagaPhase.RUNNING, "Started", "Running"),
        (SagaPhase.SUSPENDED, "Suspended", "Suspended"),
    ]:
        why = refusal(SagaStatus(phase=phase, reason=reason))
        assert why is not None and words in why
    assert refusal(SagaStatus(phase=SagaPhase.FAILED, reason="CompensationFailed")) is None
