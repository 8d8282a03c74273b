"""One test per saga rule (docs/architecture.md, "The engine"), run against the pure engine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kubesaga.engine import InvalidSpec, Reconcile, ResultReceived, Verdict, decide_all
from kubesaga.models import CommandKind, SagaPhase, StepPhase, limits
from tests.unit.sim import REF, T0, Sim, spec_of, step

EXEC, COMP = CommandKind.EXECUTE, CommandKind.COMPENSATE


def order_saga() -> Sim:
    """The seed's order saga: create order, reserve inventory, charge payment."""
    return Sim(spec_of(step("order"), step("inventory"), step("payment")))


# -- forward progress ---------------------------------------------------------------------


def test_steps_without_depends_on_run_one_after_another() -> None:
    sim = order_saga()
    sim.reconcile()
    assert sim.sent_names() == ["order"]
    sim.answer("order")
    assert sim.sent_names() == ["order", "inventory"]
    sim.answer("inventory")
    sim.answer("payment")
    assert sim.phase() is SagaPhase.COMPLETED
    assert sim.status is not None and sim.status.progress == "3/3"
    assert sim.status.finished_at == sim.now


def test_first_reconcile_writes_running_status_and_dispatches_in_one_decision() -> None:
    sim = order_saga()
    decision = sim.reconcile()
    assert decision.changed and decision.status.phase is SagaPhase.RUNNING
    assert [c.step for c in decision.commands] == ["order"]
    assert sim.step("order").phase is StepPhase.RUNNING and sim.step("order").attempt == 1


def test_recording_a_result_and_dispatching_successors_is_one_decision() -> None:
    sim = Sim(spec_of(step("a"), step("b", dependsOn=["a"]), step("c", dependsOn=["a"])))
    sim.reconcile()
    decision = sim.answer("a")
    assert decision.changed
    assert sorted(c.step for c in decision.commands) == ["b", "c"]


def test_independent_steps_are_dispatched_together() -> None:
    sim = Sim(spec_of(step("a", dependsOn=[]), step("b", dependsOn=[]), step("c", dependsOn=[])))
    decision = sim.reconcile()
    assert sorted(c.step for c in decision.commands) == ["a", "b", "c"]


def test_a_step_waits_for_all_its_dependencies() -> None:
    sim = Sim(
        spec_of(
            step("a", dependsOn=[]), step("b", dependsOn=[]), step("join", dependsOn=["a", "b"])
        )
    )
    sim.reconcile()
    sim.answer("a")
    assert "join" not in sim.sent_names()
    sim.answer("b")
    assert sim.sent_names()[-1] == "join"


def test_zero_step_saga_completes_at_once() -> None:
    sim = Sim(spec_of())
    decision = sim.reconcile()
    assert sim.phase() is SagaPhase.COMPLETED and not decision.commands
    assert sim.status is not None and sim.status.progress == "0/0"


def test_command_carries_input_context_and_outputs_of_ancestors() -> None:
    sim = Sim(
        spec_of(
            step("order", input={"sku": "A1"}),
            step("other", dependsOn=[]),
            step("pay", dependsOn=["order"], input={"amount": 10.5}),
            context={"customer": "c-1"},
        )
    )
    sim.reconcile()
    sim.answer("order", output={"order_id": "o-1"})
    sim.answer("other", output={"x": 1})
    cmd = sim.command("pay")
    assert cmd.input == {"amount": 10.5}
    assert cmd.context == {"customer": "c-1"}
    assert cmd.outputs == {"order": {"order_id": "o-1"}}
    assert cmd.action == "pay.do" and cmd.attempt == 1 and cmd.saga.uid == "uid-1"


def test_dispatch_id_names_saga_step_kind_attempt_and_a_token() -> None:
    sim = order_saga()
    sim.reconcile()
    cmd = sim.command("order")
    uid, name, kind, attempt, token = cmd.dispatch_id.split("/")
    assert (uid, name, kind, attempt) == ("uid-1", "order", "execute", "1")
    assert token
    assert sim.step("order").dispatch_id == cmd.dispatch_id


def test_reconcile_without_news_changes_nothing_and_sends_nothing() -> None:
    sim = order_saga()
    sim.reconcile()
    decision = sim.reconcile()
    assert not decision.changed and not decision.commands


# -- retries and timeouts -----------------------------------------------------------------


def test_retryable_failure_is_retried_after_backoff() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 3, "backoffSeconds": 2})))
    sim.reconcile()
    decision = sim.answer("a", ok=False, retryable=True)
    assert sim.step("a").phase is StepPhase.RUNNING
    assert decision.wake_at == sim.now + timedelta(seconds=2)
    assert sim.advance(1.9).commands == ()
    decision = sim.advance(0.1)
    assert [c.attempt for c in decision.commands] == [2]
    assert sim.step("a").attempt == 2
    sim.answer("a")
    assert sim.phase() is SagaPhase.COMPLETED


def test_backoff_grows_by_factor_and_is_capped() -> None:
    sim = Sim(
        spec_of(
            step(
                "a",
                retry={
                    "maxAttempts": 5,
                    "backoffSeconds": 1,
                    "backoffFactor": 3,
                    "maxBackoffSeconds": 5,
                },
            )
        )
    )
    sim.reconcile()
    delays = []
    for _ in range(4):
        decision = sim.answer("a", ok=False, retryable=True)
        assert decision.wake_at is not None
        delays.append((decision.wake_at - sim.now).total_seconds())
        sim.now = decision.wake_at
        sim.reconcile()
    assert delays == [1, 3, 5, 5]


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    [(30, 30), (0.5, 2), (600, 60)],
    ids=["longer-than-backoff", "shorter-than-backoff-is-the-backoff", "capped-by-max-backoff"],
)
def test_a_handler_can_ask_for_a_later_retry_within_the_policy(
    retry_after: float, waited: float
) -> None:
    sim = Sim(
        spec_of(step("a", retry={"maxAttempts": 3, "backoffSeconds": 2, "maxBackoffSeconds": 60}))
    )
    sim.reconcile()
    decision = sim.answer("a", ok=False, retryable=True, retry_after=retry_after)
    assert decision.wake_at == sim.now + timedelta(seconds=waited)
    assert sim.error("a").retry_after_seconds == retry_after, "status keeps what was asked"
    assert f"retrying in {waited:g}s" in decision.transitions[0].message
    assert sim.advance(waited - 0.1).commands == ()
    assert [c.attempt for c in sim.advance(0.1).commands] == [2]


def test_a_retry_after_does_not_buy_attempts_beyond_max_attempts() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 1})))
    sim.reconcile()
    sim.answer("a", ok=False, retryable=True, retry_after=5)
    assert sim.step("a").phase is StepPhase.FAILED


def test_retryable_failure_fails_the_step_when_attempts_are_exhausted() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 2, "backoffSeconds": 0})))
    sim.reconcile()
    sim.answer("a", ok=False, retryable=True)
    sim.reconcile()
    sim.answer("a", ok=False, retryable=True, error="still down")
    assert sim.step("a").phase is StepPhase.FAILED
    assert sim.step("a").attempt == 2
    assert sim.phase() is SagaPhase.COMPENSATED
    assert sim.status is not None and "after 2 attempts" in sim.decisions[-1].transitions[0].message


def test_permanent_failure_is_not_retried() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 5})))
    sim.reconcile()
    sim.answer("a", ok=False, retryable=False, error="card declined", error_type="Declined")
    assert sim.step("a").phase is StepPhase.FAILED
    assert sim.error("a").type == "Declined"
    assert sim.sent_names() == ["a"]


def test_timeout_counts_as_retryable_failure() -> None:
    sim = Sim(spec_of(step("a", timeoutSeconds=5, retry={"maxAttempts": 2, "backoffSeconds": 0})))
    decision = sim.reconcile()
    assert decision.wake_at == sim.now + timedelta(seconds=5)
    assert sim.command("a").deadline == sim.now + timedelta(seconds=5)
    sim.advance(5)
    assert sim.step("a").attempt == 2
    assert sim.error("a").type == "Timeout"
    sim.advance(5)
    assert sim.step("a").phase is StepPhase.FAILED
    assert sim.phase() is SagaPhase.COMPENSATED


def test_late_result_of_a_timed_out_attempt_is_rejected() -> None:
    sim = Sim(spec_of(step("a", timeoutSeconds=5, retry={"maxAttempts": 2, "backoffSeconds": 0})))
    sim.reconcile()
    first = sim.command("a")
    sim.advance(5)
    decision = sim.deliver(sim.result_for(first))
    assert decision.verdict is Verdict.REJECTED and not decision.changed
    assert sim.step("a").phase is StepPhase.RUNNING and sim.step("a").attempt == 2


# -- compensation -------------------------------------------------------------------------


def test_failed_step_compensates_succeeded_steps_in_reverse_order() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.answer("order", output={"order_id": "o-1"})
    sim.answer("inventory", output={"reservation": "r-1"})
    sim.answer("payment", ok=False, error="card declined")
    assert sim.phase() is SagaPhase.COMPENSATING
    assert sim.sent_names(COMP) == ["inventory"]
    sim.undo("inventory")
    assert sim.sent_names(COMP) == ["inventory", "order"]
    sim.undo("order")
    assert sim.phase() is SagaPhase.COMPENSATED
    assert sim.phases() == {
        "order": StepPhase.COMPENSATED,
        "inventory": StepPhase.COMPENSATED,
        "payment": StepPhase.FAILED,
    }
    assert sim.status is not None and sim.status.reason == "StepFailed"
    assert "payment" in sim.status.message and "card declined" in sim.status.message


def test_compensation_receives_the_steps_input_and_output() -> None:
    sim = Sim(spec_of(step("order", input={"sku": "A1"}), step("pay")))
    sim.reconcile()
    sim.answer("order", output={"order_id": "o-1"})
    sim.answer("pay", ok=False)
    cmd = sim.command("order", COMP)
    assert cmd.input == {"sku": "A1"} and cmd.output == {"order_id": "o-1"}
    assert cmd.action == "order.undo" and cmd.attempt == 1


def test_compensation_keeps_step_outputs() -> None:
    sim = Sim(spec_of(step("order"), step("pay")))
    sim.reconcile()
    sim.answer("order", output={"order_id": "o-1"})
    sim.answer("pay", ok=False)
    sim.undo("order")
    assert sim.step("order").output == {"order_id": "o-1"}


def test_failing_first_step_ends_compensated_not_stuck() -> None:
    sim = order_saga()
    sim.reconcile()
    decision = sim.answer("order", ok=False)
    assert sim.phase() is SagaPhase.COMPENSATED
    assert not decision.commands
    assert sim.phases()["inventory"] is StepPhase.SKIPPED
    assert sim.status is not None and "nothing needed undoing" in sim.status.message


def test_steps_without_compensation_are_not_compensated_but_keep_the_order() -> None:
    sim = Sim(spec_of(step("a"), step("b", compensation=None), step("c"), step("d")))
    sim.reconcile()
    for name in "abc":
        sim.answer(name)
    sim.answer("d", ok=False)
    assert sim.sent_names(COMP) == ["c"]
    sim.undo("c")
    assert sim.sent_names(COMP) == ["c", "a"]
    assert sim.step("b").phase is StepPhase.SUCCEEDED


def test_independent_branches_compensate_in_parallel() -> None:
    sim = Sim(
        spec_of(
            step("root", dependsOn=[]),
            step("left", dependsOn=["root"]),
            step("right", dependsOn=["root"]),
            step("fail", dependsOn=["left", "right"]),
        )
    )
    sim.reconcile()
    sim.answer("root")
    sim.answer("left")
    sim.answer("right")
    decision = sim.answer("fail", ok=False)
    assert sorted(c.step for c in decision.commands) == ["left", "right"]
    sim.undo("left")
    assert sim.sent_names(COMP) == ["left", "right"]
    sim.undo("right")
    assert sim.sent_names(COMP)[-1] == "root"


def test_in_flight_steps_are_awaited_and_compensated_if_they_succeed() -> None:
    sim = Sim(
        spec_of(
            step("root", dependsOn=[]),
            step("slow", dependsOn=["root"]),
            step("bad", dependsOn=["root"]),
        )
    )
    sim.reconcile()
    sim.answer("root")
    sim.answer("bad", ok=False)
    assert sim.phase() is SagaPhase.COMPENSATING
    assert sim.sent_names(COMP) == []
    sim.answer("slow")
    assert sim.sent_names(COMP) == ["slow"]
    sim.undo("slow")
    sim.undo("root")
    assert sim.phase() is SagaPhase.COMPENSATED


def test_in_flight_step_failing_during_compensation_is_not_retried() -> None:
    sim = Sim(spec_of(step("a", dependsOn=[]), step("b", dependsOn=[], retry={"maxAttempts": 5})))
    sim.reconcile()
    sim.answer("a", ok=False)
    sim.answer("b", ok=False, retryable=True)
    assert sim.step("b").phase is StepPhase.FAILED
    assert sim.phase() is SagaPhase.COMPENSATED
    assert sim.sent_names().count("b") == 1


def test_step_waiting_for_a_retry_is_cancelled_when_compensation_starts() -> None:
    sim = Sim(spec_of(step("a", dependsOn=[]), step("b", dependsOn=[], retry={"maxAttempts": 5})))
    sim.reconcile()
    sim.answer("b", ok=False, retryable=True)
    sim.answer("a", ok=False)
    assert sim.step("b").phase is StepPhase.FAILED
    assert "retry cancelled" in sim.error("b").message
    sim.advance(3600)
    assert sim.sent_names().count("b") == 1


def test_no_forward_dispatch_after_compensation_starts() -> None:
    sim = Sim(spec_of(step("a", dependsOn=[]), step("b", dependsOn=[]), step("c", dependsOn=["a"])))
    sim.reconcile()
    sim.answer("b", ok=False)
    sim.answer("a")
    assert "c" not in sim.sent_names()
    assert sim.step("c").phase is StepPhase.SKIPPED


def test_compensate_on_failure_compensates_the_failed_step() -> None:
    sim = Sim(spec_of(step("a"), step("b", compensateOnFailure=True)))
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    assert sim.sent_names(COMP) == ["b"]
    assert sim.command("b", COMP).output is None
    sim.undo("b")
    sim.undo("a")
    assert sim.phases() == {"a": StepPhase.COMPENSATED, "b": StepPhase.COMPENSATED}


def test_failed_step_without_compensate_on_failure_is_not_compensated() -> None:
    sim = Sim(spec_of(step("a"), step("b")))
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    assert sim.sent_names(COMP) == ["a"]


def test_compensation_is_retried_then_succeeds() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 3, "backoffSeconds": 1}), step("b")))
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    sim.undo("a", ok=False, retryable=True)
    assert sim.step("a").phase is StepPhase.COMPENSATING
    sim.advance(1)
    assert sim.command("a", COMP).attempt == 2
    sim.undo("a")
    assert sim.phase() is SagaPhase.COMPENSATED


def test_compensation_retry_policy_can_differ() -> None:
    sim = Sim(
        spec_of(
            step("a", retry={"maxAttempts": 1}, compensationRetry={"maxAttempts": 4}),
            step("b"),
        )
    )
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    for _ in range(3):
        sim.undo("a", ok=False, retryable=True)
        sim.advance(3600)
    assert sim.command("a", COMP).attempt == 4


def test_exhausted_compensation_ends_failed_with_the_reason() -> None:
    sim = Sim(
        spec_of(step("a"), step("b", retry={"maxAttempts": 2, "backoffSeconds": 0}), step("c"))
    )
    sim.reconcile()
    sim.answer("a")
    sim.answer("b")
    sim.answer("c", ok=False)
    sim.undo("b", ok=False, retryable=True, error="refund api down")
    sim.reconcile()
    sim.undo("b", ok=False, retryable=True, error="refund api down")
    assert sim.phase() is SagaPhase.FAILED
    assert sim.step("b").phase is StepPhase.COMPENSATION_FAILED
    assert sim.status is not None
    assert sim.status.reason == "CompensationFailed"
    assert "compensation of b failed: refund api down" in sim.status.message
    assert "left uncompensated: a" in sim.status.message
    assert sim.sent_names(COMP) == ["b", "b"]


def test_permanent_compensation_error_is_not_retried() -> None:
    sim = Sim(spec_of(step("a"), step("b")))
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    sim.undo("a", ok=False, retryable=False)
    assert sim.phase() is SagaPhase.FAILED


def test_compensation_timeout_is_retried() -> None:
    sim = Sim(spec_of(step("a", timeoutSeconds=3, retry={"backoffSeconds": 0}), step("b")))
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    sim.advance(3)
    assert sim.error("a", COMP).type == "Timeout"
    sim.reconcile()
    assert sim.command("a", COMP).attempt == 2


# -- manual compensation and deadline -----------------------------------------------------


def test_manual_compensation_of_a_running_saga() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.answer("order")
    decision = sim.request_compensation()
    assert sim.phase() is SagaPhase.COMPENSATING and not decision.commands
    assert sim.status is not None and sim.status.reason == "CompensationRequested"
    sim.answer("inventory")
    assert sim.sent_names() == ["order", "inventory"]
    sim.undo("inventory")
    sim.undo("order")
    assert sim.phase() is SagaPhase.COMPENSATED
    assert sim.step("payment").phase is StepPhase.SKIPPED


def test_manual_compensation_of_a_completed_saga_undoes_it() -> None:
    sim = order_saga()
    sim.reconcile()
    for name in ("order", "inventory", "payment"):
        sim.answer(name)
    assert sim.phase() is SagaPhase.COMPLETED
    sim.request_compensation()
    assert sim.phase() is SagaPhase.COMPENSATING
    assert sim.status is not None and sim.status.finished_at is None
    for name in ("payment", "inventory", "order"):
        assert sim.sent_names(COMP)[-1] == name
        sim.undo(name)
    assert sim.phase() is SagaPhase.COMPENSATED
    assert sim.status.message.endswith("compensated: payment, inventory, order")


def test_compensation_requested_on_a_compensated_saga_is_a_noop_with_a_message() -> None:
    sim = Sim(spec_of(step("a")))
    sim.reconcile()
    sim.answer("a", ok=False)
    before = sim.status
    decision = sim.request_compensation()
    assert sim.phase() is SagaPhase.COMPENSATED and not decision.commands
    assert decision.transitions and "nothing to do" in decision.transitions[0].message
    assert before is not None and sim.status is not None
    assert [s.phase for s in sim.status.steps] == [s.phase for s in before.steps]


def test_compensation_requested_at_creation_runs_nothing() -> None:
    sim = Sim(spec_of(step("a"), compensate=True))
    decision = sim.reconcile()
    assert sim.phase() is SagaPhase.COMPENSATED and not decision.commands


def test_deadline_turns_the_saga_to_compensation() -> None:
    sim = Sim(spec_of(step("a"), step("b"), deadlineSeconds=30))
    decision = sim.reconcile()
    assert decision.wake_at == sim.now + timedelta(seconds=30)
    sim.answer("a")
    sim.advance(30)
    assert sim.phase() is SagaPhase.COMPENSATING
    assert sim.status is not None and sim.status.reason == "DeadlineExceeded"
    sim.answer("b")
    sim.undo("b")
    sim.undo("a")
    assert sim.phase() is SagaPhase.COMPENSATED


# -- idempotence --------------------------------------------------------------------------


def test_duplicate_result_is_recognised_and_changes_nothing() -> None:
    sim = order_saga()
    sim.reconcile()
    result = sim.result_for(sim.command("order"), output={"order_id": "o-1"})
    sim.deliver(result)
    decision = sim.deliver(result)
    assert decision.verdict is Verdict.DUPLICATE and not decision.changed
    assert sim.sent_names() == ["order", "inventory"]


def test_duplicate_of_a_retryable_failure_does_not_consume_an_attempt() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 3})))
    sim.reconcile()
    failed = sim.result_for(sim.command("a"), ok=False, retryable=True)
    sim.deliver(failed)
    assert sim.deliver(failed).verdict is Verdict.DUPLICATE
    assert sim.step("a").attempt == 1


def test_result_with_unknown_dispatch_id_is_rejected() -> None:
    sim = order_saga()
    sim.reconcile()
    forged = sim.result_for(sim.command("order")).model_copy(
        update={"dispatch_id": "uid-1/order/execute/1/guess"}
    )
    decision = sim.deliver(forged)
    assert decision.verdict is Verdict.REJECTED and "dispatch id" in decision.reason
    assert sim.step("order").phase is StepPhase.RUNNING


def test_result_for_another_saga_uid_is_rejected() -> None:
    sim = order_saga()
    sim.reconcile()
    result = sim.result_for(sim.command("order"))
    other = result.model_copy(update={"saga": result.saga.model_copy(update={"uid": "uid-2"})})
    assert sim.deliver(other).verdict is Verdict.REJECTED


def test_result_for_unknown_step_is_rejected() -> None:
    sim = order_saga()
    sim.reconcile()
    result = sim.result_for(sim.command("order")).model_copy(update={"step": "nope"})
    decision = sim.deliver(result)
    assert decision.verdict is Verdict.REJECTED and "no step" in decision.reason


def test_late_success_after_compensation_does_not_change_the_outcome() -> None:
    sim = order_saga()
    sim.reconcile()
    first = sim.result_for(sim.command("order"))
    sim.deliver(first)
    sim.answer("inventory", ok=False)
    sim.undo("order")
    assert sim.phase() is SagaPhase.COMPENSATED
    before = sim.status
    decision = sim.deliver(first)
    assert decision.verdict is Verdict.DUPLICATE and not decision.changed
    assert sim.status is before


def test_duplicate_compensation_result_is_recognised() -> None:
    sim = Sim(spec_of(step("a"), step("b")))
    sim.reconcile()
    sim.answer("a")
    sim.answer("b", ok=False)
    undo = sim.result_for(sim.command("a", COMP))
    sim.deliver(undo)
    assert sim.deliver(undo).verdict is Verdict.DUPLICATE


# -- validation and limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([step("a", dependsOn=["b"]), step("b", dependsOn=["a"])], "dependency cycle: a -> b -> a"),
        ([step("a", dependsOn=["zz"])], "depends on unknown step 'zz'"),
        ([step("a", dependsOn=["a"])], "depends on itself"),
    ],
)
def test_invalid_graph_fails_the_saga_with_a_clear_condition(
    steps: list[dict[str, object]], message: str
) -> None:
    sim = Sim(spec_of(*steps))
    decision = sim.reconcile()
    assert sim.phase() is SagaPhase.FAILED and not decision.commands
    assert sim.status is not None and sim.status.reason == "InvalidSpec"
    assert message in sim.status.message
    valid = [c for c in sim.status.conditions if c.type == "Valid"]
    assert valid and valid[0].status == "False" and message in valid[0].message


def test_oversized_spec_is_rejected() -> None:
    sim = Sim(spec_of(step("a", input={"blob": "x" * limits.MAX_SPEC_BYTES})))
    sim.reconcile()
    assert sim.phase() is SagaPhase.FAILED
    assert sim.status is not None and "over the limit" in sim.status.message


def test_oversized_output_fails_the_step_with_a_clear_error() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 3}), step("b")))
    sim.reconcile()
    sim.answer("a", output={"blob": "x" * limits.MAX_OUTPUT_BYTES})
    error = sim.step("a").error
    assert sim.step("a").phase is StepPhase.FAILED and sim.step("a").output is None
    assert error is not None and error.type == "OutputTooLarge" and not error.retryable
    assert sim.sent_names() == ["a"]


def test_long_error_messages_are_truncated() -> None:
    sim = Sim(spec_of(step("a")))
    sim.reconcile()
    sim.answer("a", ok=False, error="e" * 100_000)
    error = sim.step("a").error
    assert error is not None and len(error.message) == limits.MAX_ERROR_MESSAGE_CHARS


def test_attempts_count_from_one_in_status_and_command() -> None:
    sim = Sim(spec_of(step("a", retry={"maxAttempts": 2, "backoffSeconds": 0})))
    sim.reconcile()
    assert sim.step("a").attempt == sim.command("a").attempt == 1
    sim.answer("a", ok=False, retryable=True)
    sim.reconcile()
    assert sim.step("a").attempt == sim.command("a").attempt == 2


# -- republication ------------------------------------------------------------------------


def test_in_flight_commands_rebuild_exactly_what_was_sent() -> None:
    sim = Sim(
        spec_of(step("a", dependsOn=[]), step("b", dependsOn=[]), step("c", timeoutSeconds=9))
    )
    sim.reconcile()
    sent = {c.step: c for c in sim.sent}
    again = {c.step: c for c in sim.in_flight()}
    assert again == sent
    sim.answer("a")
    assert [c.step for c in sim.in_flight()] == ["b"]


def test_in_flight_includes_compensations_and_skips_backoff() -> None:
    sim = Sim(spec_of(step("a", dependsOn=[]), step("b", dependsOn=[], retry={"maxAttempts": 3})))
    sim.reconcile()
    sim.answer("b", ok=False, retryable=True)
    assert [c.step for c in sim.in_flight()] == ["a"]
    sim.request_compensation()
    sim.answer("a")
    assert [(c.step, c.kind) for c in sim.in_flight()] == [("a", COMP)]


def test_in_flight_names_what_is_unanswered_after_the_decision_and_nothing_else() -> None:
    sim = Sim(spec_of(step("a", dependsOn=[]), step("b", dependsOn=[], timeoutSeconds=5)))
    first = sim.reconcile()
    assert set(first.in_flight.dispatch_ids) == {c.dispatch_id for c in first.commands}
    decision = sim.answer("a")
    assert decision.in_flight.dispatch_ids == (sim.command("b").dispatch_id,)
    timed_out = sim.advance(5)
    assert timed_out.in_flight.dispatch_ids == ()  # b timed out: nothing awaited, not even b


def test_a_refused_saga_has_nothing_in_flight() -> None:
    sim = order_saga()
    sim.reconcile()
    assert sim.status is not None
    broken = sim.status.model_copy(deep=True)
    broken.steps[1].phase = StepPhase.RUNNING  # in flight by its looks, but never dispatched
    sim.status = broken
    decision = sim.reconcile()
    assert sim.status.reason == "InvalidStatus"
    assert decision.in_flight.dispatch_ids == () and sim.in_flight() == []


def test_a_finished_saga_expires_ttl_seconds_after_it_finished() -> None:
    sim = Sim(spec_of(step("a"), ttlSecondsAfterFinished=30))
    assert sim.reconcile().expires_at is None
    sim.now += timedelta(seconds=5)
    finished = sim.answer("a")
    assert sim.phase() is SagaPhase.COMPLETED
    assert finished.expires_at == sim.now + timedelta(seconds=30)
    sim.advance(10)
    assert sim.decisions[-1].expires_at == finished.expires_at
    assert Sim(spec_of(step("a"))).reconcile().expires_at is None


def test_results_applied_are_timed_from_their_dispatch() -> None:
    sim = order_saga()
    sim.reconcile()
    sim.now += timedelta(seconds=2)
    decision = sim.answer("order")
    assert [(s.action, s.seconds) for s in decision.samples] == [("order.do", 2.0)]
    assert sim.answer("order").samples == ()  # a duplicate is not timed again


# -- a spec that does not parse ------------------------------------------------------------


def test_an_unparseable_spec_fails_a_new_saga_and_refuses_its_results() -> None:
    sim = order_saga()
    sim.reconcile()
    result = ResultReceived(sim.result_for(sim.command("order")))
    invalid = InvalidSpec(REF, 1, "steps.0.name: bad", None)
    decision = decide_all(invalid, [Reconcile(), result], T0, "t")
    assert decision.status.phase is SagaPhase.FAILED and decision.status.reason == "InvalidSpec"
    assert "steps.0.name: bad" in decision.status.message
    assert [(j.verdict, j.reason) for j in decision.judgements] == [
        (Verdict.APPLIED, ""),
        (Verdict.REJECTED, "saga spec is invalid"),
    ]
    assert [t.reason for t in decision.transitions] == ["InvalidSpec"]
    assert decision.changed and not decision.commands and decision.in_flight.dispatch_ids == ()
    again = decide_all(InvalidSpec(REF, 1, "steps.0.name: bad", decision.status), [result], T0, "t")
    assert not again.changed and not again.transitions
    assert again.verdict is Verdict.REJECTED


def test_an_unparseable_spec_keeps_the_status_of_a_saga_that_already_ran() -> None:
    sim = order_saga()
    sim.reconcile()
    assert sim.status is not None
    decision = decide_all(InvalidSpec(REF, 2, "spec: bad", sim.status), [Reconcile()], T0, "t")
    assert decision.status.phase is SagaPhase.RUNNING
    assert decision.status.observed_generation == 2 and not decision.transitions


# -- batches and foreign statuses ----------------------------------------------------------


def test_a_batch_records_every_result_before_dispatching() -> None:
    sim = Sim(
        spec_of(
            step("a", dependsOn=[]),
            step("b", dependsOn=[]),
            step("after_a", dependsOn=["a"]),
        )
    )
    sim.reconcile()
    ok_a = sim.result_for(sim.command("a"))
    failed_b = sim.result_for(sim.command("b"), ok=False)
    decision = decide_all(
        sim.view(), [ResultReceived(ok_a), ResultReceived(failed_b)], sim.now, "t"
    )
    assert [j.verdict for j in decision.judgements] == [Verdict.APPLIED, Verdict.APPLIED]
    assert all(c.kind is COMP for c in decision.commands)
    assert decision.status.step("after_a").phase is StepPhase.SKIPPED


def test_a_batch_gives_one_verdict_per_result() -> None:
    sim = order_saga()
    sim.reconcile()
    good = sim.result_for(sim.command("order"))
    forged = good.model_copy(update={"dispatch_id": "nope"})
    decision = decide_all(sim.view(), [ResultReceived(forged), ResultReceived(good)], sim.now, "t")
    assert [j.verdict for j in decision.judgements] == [Verdict.REJECTED, Verdict.APPLIED]
    assert [c.step for c in decision.commands] == ["inventory"]


def test_a_status_that_does_not_match_the_spec_fails_the_saga_and_dispatches_nothing() -> None:
    sim = order_saga()
    sim.reconcile()
    assert sim.status is not None
    sim.status = sim.status.model_copy(update={"steps": []})
    decision = sim.reconcile()
    assert sim.phase() is SagaPhase.FAILED and not decision.commands
    assert sim.status.reason == "InvalidStatus"
    assert "do not match" in sim.status.message


def test_a_running_step_nobody_dispatched_fails_the_saga_instead_of_hanging() -> None:
    sim = order_saga()
    sim.reconcile()
    assert sim.status is not None
    broken = sim.status.model_copy(deep=True)
    broken.steps[0].dispatch_id = None
    sim.status = broken
    sim.reconcile()
    assert sim.phase() is SagaPhase.FAILED
    assert "no attempt in flight" in sim.status.message


def test_a_status_never_adopted_is_rebuilt_and_its_commands_never_republished() -> None:
    sim = order_saga()
    sim.reconcile()
    assert sim.status is not None
    foreign = sim.status.model_copy(update={"observed_generation": None})
    sim.status = foreign
    decision = sim.reconcile()
    assert [c.step for c in decision.commands] == ["order"]
    assert decision.in_flight.dispatch_ids == (sim.command("order").dispatch_id,)
    assert (
        sim.step("order").attempt == 1
        and sim.command("order").dispatch_id != foreign.steps[0].dispatch_id
    )
