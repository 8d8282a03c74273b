"""Property tests: random DAGs under random interleavings of results, duplicates, stale
results, lost commands, timeouts and manual compensation. The engine's invariants must hold
on every path, and every saga must end in a final phase once handlers answer.

Each path is run once with one event per engine call and once with random batches, since the
operator always hands the engine whatever queued up while it was writing (results, duplicates
and a Reconcile together, in any order)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubesaga.engine import Reconcile, ResultReceived, StepGraph, Verdict
from kubesaga.models import Command, CommandKind, SagaPhase, SagaStatus, StepPhase
from tests.unit.sim import Sim, spec_of

EXEC, COMP = CommandKind.EXECUTE, CommandKind.COMPENSATE
P = StepPhase

ALLOWED = {
    P.PENDING: {P.PENDING, P.RUNNING, P.SKIPPED},
    # A result and the compensation it unblocks can land in one decision.
    P.RUNNING: {P.RUNNING, P.SUCCEEDED, P.FAILED, P.COMPENSATING},
    P.SUCCEEDED: {P.SUCCEEDED, P.COMPENSATING},
    P.FAILED: {P.FAILED, P.COMPENSATING},
    P.SKIPPED: {P.SKIPPED},
    P.COMPENSATING: {P.COMPENSATING, P.COMPENSATED, P.COMPENSATION_FAILED},
    P.COMPENSATED: {P.COMPENSATED},
    P.COMPENSATION_FAILED: {P.COMPENSATION_FAILED},
}


@st.composite
def sagas(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A random valid DAG of up to 7 steps, mixing sequential defaults and explicit deps."""
    n = draw(st.integers(min_value=0, max_value=7))
    steps: list[dict[str, Any]] = []
    for i in range(n):
        name = f"s{i}"
        entry: dict[str, Any] = {"name": name, "action": f"{name}.do"}
        if draw(st.booleans()):
            entry["compensation"] = f"{name}.undo"
        mode = draw(st.sampled_from(["previous", "explicit"])) if i else "previous"
        if mode == "explicit":
            entry["dependsOn"] = draw(
                st.lists(st.sampled_from([f"s{j}" for j in range(i)]), max_size=3, unique=True)
            )
        entry["retry"] = {
            "maxAttempts": draw(st.integers(1, 3)),
            "backoffSeconds": draw(st.sampled_from([0, 1, 5])),
        }
        if draw(st.booleans()):
            entry["timeoutSeconds"] = draw(st.sampled_from([2, 10]))
        entry["compensateOnFailure"] = draw(st.booleans())
        steps.append(entry)
    return steps


class Checker:
    """Watches every decision of a simulated saga and asserts the engine's invariants."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.graph = StepGraph.of(sim.spec)
        self.compensation_started = False

    def descendants(self, name: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.graph.dependents[name])
        while stack:
            node = stack.pop()
            if node not in out:
                out.add(node)
                stack.extend(self.graph.dependents[node])
        return out

    def needs_undo(self, status: SagaStatus, name: str) -> bool:
        s = status.step(name)
        spec = self.sim.spec.step(name)
        if spec.compensation is None or s.attempt == 0:
            return False
        return s.phase is P.SUCCEEDED or (s.phase is P.FAILED and spec.compensate_on_failure)

    def check(self, before: SagaStatus | None, after: SagaStatus, commands: list[Command]) -> None:
        if before is not None:
            if before.phase in (SagaPhase.COMPENSATED, SagaPhase.FAILED):
                assert after.phase is before.phase, "a final outcome changed"
            if before.phase is SagaPhase.COMPLETED:
                assert after.phase is not SagaPhase.FAILED or after.reason == "CompensationFailed"
            for old, new in zip(before.steps, after.steps, strict=True):
                assert new.phase in ALLOWED[old.phase], f"{old.name}: {old.phase} -> {new.phase}"
                if old.output is not None:
                    assert new.output == old.output, "a recorded output changed"
        for s in after.steps:
            spec = self.sim.spec.step(s.name)
            assert s.attempt <= spec.retry.max_attempts
            if s.compensation is not None:
                assert s.compensation.attempt <= spec.compensation_policy.max_attempts
        started_now = after.phase is SagaPhase.COMPENSATING or self.compensation_started
        for cmd in commands:
            if cmd.kind is EXEC:
                assert not started_now, f"forward dispatch of {cmd.step} after compensation began"
            elif cmd.attempt == 1:
                now = after.step(cmd.step)
                spec = self.sim.spec.step(cmd.step)
                succeeded = now.output is not None
                assert succeeded or (now.error is not None and spec.compensate_on_failure), (
                    f"compensating {cmd.step}, which neither succeeded nor may undo a failure"
                )
                for d in self.descendants(cmd.step):
                    dp = after.step(d).phase
                    assert dp not in (P.RUNNING, P.COMPENSATING, P.COMPENSATION_FAILED), (
                        f"{cmd.step} compensation started while dependent {d} is {dp}"
                    )
                    assert not self.needs_undo(after, d), f"{d} not undone before {cmd.step}"
        if after.phase in (SagaPhase.COMPENSATING, SagaPhase.COMPENSATED, SagaPhase.FAILED):
            self.compensation_started = True


def run_saga(
    data: st.DataObject, steps: list[dict[str, Any]], chaos_moves: int, batches: bool = False
) -> Sim:
    sim = Sim(spec_of(*steps))
    checker = Checker(sim)
    outstanding: list[Command] = []
    answered: list[Any] = []
    sent_ids: set[str] = set()

    def apply(action: Any, events: int = 1) -> None:
        before = sim.status
        decision = action()
        assert len(decision.judgements) == events
        if all(j.verdict is not Verdict.APPLIED for j in decision.judgements):
            assert not decision.changed or before is None
        assert sim.status is not None
        checker.check(before, sim.status, list(decision.commands))
        outstanding.extend(decision.commands)
        sent_ids.update(c.dispatch_id for c in decision.commands)
        in_flight = set(decision.in_flight.dispatch_ids)
        assert {c.dispatch_id for c in decision.commands} <= in_flight, "dispatched, not awaited"
        assert in_flight <= sent_ids, "awaiting a result of a command never sent"

    def answer(cmd: Command) -> Any:
        outcome = data.draw(st.sampled_from(["ok", "ok", "retryable", "permanent"]))
        result = sim.result_for(
            cmd, ok=outcome == "ok", retryable=outcome == "retryable", output={"n": len(answered)}
        )
        answered.append(result)
        return result

    def deliver_batch() -> None:
        """Some outstanding results, maybe a duplicate and a Reconcile, in a random order."""
        size = data.draw(st.integers(1, min(4, len(outstanding))))
        events: list[Reconcile | ResultReceived] = [
            ResultReceived(answer(outstanding.pop(data.draw(st.integers(0, len(outstanding) - 1)))))
            for _ in range(size)
        ]
        duplicate = data.draw(st.booleans())
        if duplicate and answered:
            events.append(ResultReceived(data.draw(st.sampled_from(answered))))
        if data.draw(st.booleans()):
            events.append(Reconcile())
        events = data.draw(st.permutations(events))
        apply(lambda: sim.feed_all(events), len(events))

    apply(sim.reconcile)
    for _ in range(chaos_moves):
        if sim.phase().is_final and not outstanding and data.draw(st.booleans()):
            break
        move = data.draw(
            st.sampled_from(
                [
                    "answer",
                    "answer",
                    "answer",
                    "duplicate",
                    "lose",
                    "republish",
                    "tick",
                    "compensate",
                ]
            )
        )
        if move == "answer" and outstanding and batches:
            deliver_batch()
        elif move == "answer" and outstanding:
            cmd = outstanding.pop(data.draw(st.integers(0, len(outstanding) - 1)))
            result = answer(cmd)
            apply(lambda r=result: sim.deliver(r))
        elif move == "duplicate" and answered:
            result = answered[data.draw(st.integers(0, len(answered) - 1))]
            apply(lambda r=result: sim.deliver(r))
        elif move == "lose" and outstanding:
            outstanding.pop(data.draw(st.integers(0, len(outstanding) - 1)))
        elif move == "republish":
            outstanding.extend(sim.in_flight())
        elif move == "tick":
            seconds = data.draw(st.sampled_from([0.5, 1, 3, 11]))
            apply(lambda s=seconds: sim.advance(s))
        elif move == "compensate" and not sim.spec.compensate:
            apply(sim.request_compensation)

    # Handlers now answer everything, successfully; lost commands come back by republication.
    for _ in range(500):
        if sim.phase().is_final and not sim.in_flight():
            break
        if not outstanding:
            outstanding.extend(sim.in_flight())
        if outstanding and batches:
            results = [ResultReceived(sim.result_for(c)) for c in outstanding]
            outstanding.clear()
            apply(lambda r=results: sim.feed_all(r), len(results))
        elif outstanding:
            result = sim.result_for(outstanding.pop(0))
            apply(lambda r=result: sim.deliver(r))
        else:
            apply(lambda: sim.advance(60))
    assert sim.phase().is_final, f"saga stuck in {sim.phase()}: {sim.phases()}"
    return sim


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=sagas())
def test_every_interleaving_keeps_the_invariants_and_ends_final(
    data: st.DataObject, steps: list[dict[str, Any]]
) -> None:
    run_saga(data, steps, chaos_moves=60)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), steps=sagas())
def test_sagas_answered_successfully_complete(
    data: st.DataObject, steps: list[dict[str, Any]]
) -> None:
    sim = run_saga(data, steps, chaos_moves=0)
    assert sim.phase() is SagaPhase.COMPLETED
    assert sim.status is not None
    assert all(s.phase is P.SUCCEEDED for s in sim.status.steps)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), steps=sagas().filter(bool))
def test_only_undoable_steps_are_compensated_and_each_once(
    data: st.DataObject, steps: list[dict[str, Any]]
) -> None:
    sim = run_saga(data, steps, chaos_moves=60)
    assert sim.status is not None
    first_compensations = [c.step for c in sim.sent if c.kind is COMP and c.attempt == 1]
    assert len(first_compensations) == len(set(first_compensations))
    for s in sim.status.steps:
        spec = sim.spec.step(s.name)
        if s.phase in (P.COMPENSATED, P.COMPENSATION_FAILED):
            assert spec.compensation is not None
        if sim.phase() is SagaPhase.COMPENSATED:
            assert not (s.phase is P.SUCCEEDED and spec.compensation is not None), (
                f"{s.name} left succeeded in a compensated saga"
            )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=sagas())
def test_random_batches_keep_the_invariants_and_end_final(
    data: st.DataObject, steps: list[dict[str, Any]]
) -> None:
    run_saga(data, steps, chaos_moves=60, batches=True)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), steps=sagas())
def test_sagas_answered_successfully_in_batches_complete(
    data: st.DataObject, steps: list[dict[str, Any]]
) -> None:
    sim = run_saga(data, steps, chaos_moves=0, batches=True)
    assert sim.phase() is SagaPhase.COMPLETED
