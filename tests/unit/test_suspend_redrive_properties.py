"""Property tests of suspend/resume and redrive: random DAGs, random answers, random toggles.

- A suspended saga dispatches nothing, whatever arrives (results, duplicates, ticks), and once
  resumed and answered it ends final like any other.
- Redrive keeps the reverse order rule, compensates each step at most once (one successful
  compensation, every dispatch id new), never changes a recorded output, and keeps every
  given-up compensation in the step's history.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesaga.engine import Decision, StepGraph, Verdict
from kubesaga.models import Command, CommandKind, Result, SagaPhase, SagaStatus, StepPhase
from tests.unit.sim import Sim, spec_of
from tests.unit.test_engine_properties import sagas

EXEC, COMP = CommandKind.EXECUTE, CommandKind.COMPENSATE
P = StepPhase


class Driver:
    """A simulated saga with the commands it sent, answered by the test's choices."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.sim = Sim(spec_of(*steps))
        self.graph = StepGraph.of(self.sim.spec)
        self.outstanding: list[Command] = []
        self.answered: list[Result] = []
        self.sent_ids: set[str] = set()
        self.undone: dict[str, int] = {}

    def apply(self, decision: Decision, events: list[Result] | None = None) -> Decision:
        for command in decision.commands:
            assert command.dispatch_id not in self.sent_ids, "a dispatch id was sent twice"
            self.sent_ids.add(command.dispatch_id)
        self.outstanding.extend(decision.commands)
        for result, judgement in zip(events or [], decision.judgements, strict=False):
            if (
                judgement.verdict is Verdict.APPLIED
                and result.kind is COMP
                and result.error is None
            ):
                self.undone[result.step] = self.undone.get(result.step, 0) + 1
                assert self.undone[result.step] == 1, f"{result.step} compensated twice"
        return decision

    def deliver(self, result: Result) -> Decision:
        return self.apply(self.sim.deliver(result), [result])

    def descendants(self, name: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.graph.dependents[name])
        while stack:
            node = stack.pop()
            if node not in out:
                out.add(node)
                stack.extend(self.graph.dependents[node])
        return out

    def check_order(self, status: SagaStatus, commands: tuple[Command, ...]) -> None:
        """A first compensation attempt starts only once everything downstream is undone."""
        for cmd in commands:
            if cmd.kind is COMP and cmd.attempt == 1:
                for d in self.descendants(cmd.step):
                    dp = status.step(d).phase
                    assert dp in (P.SKIPPED, P.COMPENSATED, P.PENDING) or not self.needs_undo(
                        status, d
                    ), f"{cmd.step} compensation started while dependent {d} is {dp}"

    def needs_undo(self, status: SagaStatus, name: str) -> bool:
        s = status.step(name)
        spec = self.sim.spec.step(name)
        if spec.compensation is None or s.attempt == 0:
            return False
        if s.phase in (P.RUNNING, P.COMPENSATING, P.COMPENSATION_FAILED):
            return True
        return s.phase is P.SUCCEEDED or (s.phase is P.FAILED and spec.compensate_on_failure)

    def settle(self, ok: bool = True) -> None:
        """Answer everything (successfully unless ``ok`` is False) until the saga is final."""
        sim = self.sim
        for _ in range(500):
            if sim.phase().is_final and not sim.in_flight():
                return
            if not self.outstanding:
                self.outstanding.extend(sim.in_flight())
            if self.outstanding:
                cmd = self.outstanding.pop(0)
                self.deliver(sim.result_for(cmd, ok=ok or cmd.kind is EXEC))
            else:
                self.apply(sim.advance(60))
        raise AssertionError(f"saga stuck in {sim.phase()}: {sim.phases()}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=sagas())
def test_a_suspended_saga_dispatches_nothing_and_ends_final_once_resumed(
    data: st.DataObject, steps: list[dict[str, Any]]
) -> None:
    driver = Driver(steps)
    sim = driver.sim
    driver.apply(sim.reconcile())
    for _ in range(data.draw(st.integers(0, 40))):
        move = data.draw(st.sampled_from(["answer", "answer", "duplicate", "tick", "toggle"]))
        if move == "answer" and driver.outstanding:
            cmd = driver.outstanding.pop(data.draw(st.integers(0, len(driver.outstanding) - 1)))
            outcome = data.draw(st.sampled_from(["ok", "ok", "retryable", "permanent"]))
            result = sim.result_for(
                cmd, ok=outcome == "ok", retryable=outcome == "retryable", output={"n": 1}
            )
            driver.answered.append(result)
            decision = driver.deliver(result)
        elif move == "duplicate" and driver.answered:
            decision = driver.deliver(data.draw(st.sampled_from(driver.answered)))
        elif move == "tick":
            decision = driver.apply(sim.advance(data.draw(st.sampled_from([1, 3, 11, 60]))))
        elif move == "toggle":
            decision = driver.apply(sim.suspend(not sim.spec.suspend))
        else:
            continue
        if sim.spec.suspend:
            assert not decision.commands, "a suspended saga dispatched"
            assert sim.phase() is SagaPhase.SUSPENDED or sim.phase().is_final
            if sim.phase() is SagaPhase.SUSPENDED:
                status = sim.status
                assert status is not None and status.resume_phase in (
                    SagaPhase.RUNNING,
                    SagaPhase.COMPENSATING,
                )
                wake = decision.wake_at
                assert wake is None or wake > sim.now, "a suspended saga woke itself up"
        else:
            assert sim.phase() is not SagaPhase.SUSPENDED
    if sim.spec.suspend:
        driver.apply(sim.suspend(False))
    driver.settle()
    assert sim.phase().is_final


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=sagas().filter(bool))
def test_redrive_keeps_reverse_order_outputs_and_compensates_each_step_at_most_once(
    data: st.DataObject, steps: list[dict[str, Any]]
) -> None:
    for entry in steps:
        entry["compensationRetry"] = {"maxAttempts": 1}
    driver = Driver(steps)
    sim = driver.sim
    driver.apply(sim.reconcile())
    failing = data.draw(st.integers(0, len(steps) - 1))
    # Forward: every step succeeds but one, which fails; then compensations fail at random.
    for _ in range(500):
        if sim.phase() is not SagaPhase.RUNNING:
            break
        if not driver.outstanding:
            driver.apply(sim.advance(60))
            continue
        cmd = driver.outstanding.pop(0)
        driver.deliver(sim.result_for(cmd, ok=cmd.step != f"s{failing}", output={"n": cmd.step}))
    outputs = {s.name: s.output for s in (sim.status.steps if sim.status else [])}
    redrives = 0
    while True:
        for _ in range(500):
            if sim.phase().is_final and not sim.in_flight():
                break
            if not driver.outstanding:
                driver.outstanding.extend(sim.in_flight())
            if not driver.outstanding:
                driver.apply(sim.advance(60))
                continue
            cmd = driver.outstanding.pop(data.draw(st.integers(0, len(driver.outstanding) - 1)))
            ok = cmd.kind is EXEC or data.draw(st.booleans())
            decision = driver.deliver(sim.result_for(cmd, ok=ok))
            assert sim.status is not None
            driver.check_order(sim.status, decision.commands)
        assert sim.status is not None
        assert sim.phase().is_final
        for s in sim.status.steps:
            if outputs.get(s.name) is not None:
                assert s.output == outputs[s.name], "a recorded output changed"
        if sim.phase() is not SagaPhase.FAILED or redrives == 5:
            break
        failed = [s.name for s in sim.status.steps if s.phase is P.COMPENSATION_FAILED]
        history = {n: len(sim.step(n).compensation_history or []) for n in failed}
        redrives += 1
        decision = driver.apply(sim.redrive())
        assert sim.status is not None
        driver.check_order(sim.status, decision.commands)
        assert sorted(c.step for c in decision.commands) == sorted(failed), (
            "a redrive dispatches exactly the failed compensations first"
        )
        for name in failed:
            assert len(sim.step(name).compensation_history or []) == history[name] + 1
    if sim.phase() is SagaPhase.COMPENSATED:
        assert all(not driver.needs_undo(sim.status, s.name) for s in sim.status.steps)
