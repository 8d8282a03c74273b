"""A tiny driver around the pure engine: a clock, a saga and the commands it sent.

Tests use it to speak in saga terms ("answer the order step with success") instead of
building Result messages by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubesaga.engine import Decision, Reconcile, ResultReceived, SagaView, Verdict, decide_all
from kubesaga.models import (
    Command,
    CommandKind,
    ErrorInfo,
    Result,
    SagaPhase,
    SagaRef,
    SagaSpec,
    SagaStatus,
    StepPhase,
    StepStatus,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REF = SagaRef(namespace="default", name="order-1", uid="uid-1")


def spec_of(*steps: dict[str, Any], **kw: Any) -> SagaSpec:
    return SagaSpec.model_validate({"steps": list(steps), **kw})


def step(name: str, **kw: Any) -> dict[str, Any]:
    """A step whose action and compensation are named after it."""
    out: dict[str, Any] = {"name": name, "action": f"{name}.do", "compensation": f"{name}.undo"}
    out.update(kw)
    return out


class Sim:
    def __init__(self, spec: SagaSpec, generation: int = 1) -> None:
        self.spec = spec
        self.generation = generation
        self.status: SagaStatus | None = None
        self.now = T0
        self.sent: list[Command] = []
        self.decisions: list[Decision] = []
        self.tokens = 0

    # driving ------------------------------------------------------------------------------

    def view(self) -> SagaView:
        return SagaView(REF, self.generation, self.spec, self.status)

    def feed(self, event: Reconcile | ResultReceived) -> Decision:
        return self.feed_all([event])

    def feed_all(self, events: list[Reconcile | ResultReceived]) -> Decision:
        """One engine call for ``events``, as the operator makes for what queued up."""
        self.tokens += 1
        decision = decide_all(self.view(), events, self.now, f"t{self.tokens}")
        self.decisions.append(decision)
        if decision.changed:
            self.status = decision.status
        else:
            assert not decision.commands, "commands without a status change"
        self.sent.extend(decision.commands)
        return decision

    def reconcile(self) -> Decision:
        return self.feed(Reconcile())

    def advance(self, seconds: float) -> Decision:
        self.now += timedelta(seconds=seconds)
        return self.reconcile()

    def request_compensation(self) -> Decision:
        self.spec = self.spec.model_copy(update={"compensate": True})
        self.generation += 1
        return self.reconcile()

    def set_spec(self, **changes: Any) -> Decision:
        """Edit the spec (``suspend``, ``redrive``...) as a patch would, and reconcile."""
        self.spec = self.spec.model_copy(update=changes)
        self.generation += 1
        return self.reconcile()

    def suspend(self, on: bool = True) -> Decision:
        return self.set_spec(suspend=on)

    def redrive(self) -> Decision:
        return self.set_spec(redrive=self.spec.redrive + 1)

    # answering ----------------------------------------------------------------------------

    def command(self, step: str, kind: CommandKind = CommandKind.EXECUTE) -> Command:
        """The latest command sent for ``step``."""
        for cmd in reversed(self.sent):
            if cmd.step == step and cmd.kind is kind:
                return cmd
        raise AssertionError(f"no {kind.value} command was sent for {step}")

    def result_for(
        self,
        cmd: Command,
        ok: bool = True,
        output: dict[str, Any] | None = None,
        error: str = "boom",
        retryable: bool = False,
        error_type: str = "Error",
        retry_after: float | None = None,
    ) -> Result:
        if not ok:
            info = ErrorInfo(
                message=error,
                type=error_type,
                retryable=retryable,
                retry_after_seconds=retry_after,
            )
            return Result.answering(cmd, error=info)
        return Result.answering(cmd, output=output if output is not None else {"done": cmd.step})

    def answer(
        self,
        step: str,
        kind: CommandKind = CommandKind.EXECUTE,
        **kw: Any,
    ) -> Decision:
        return self.deliver(self.result_for(self.command(step, kind), **kw))

    def undo(self, step: str, **kw: Any) -> Decision:
        return self.answer(step, CommandKind.COMPENSATE, **kw)

    def deliver(self, result: Result) -> Decision:
        decision = self.feed(ResultReceived(result))
        return decision

    # reading ------------------------------------------------------------------------------

    def phase(self) -> SagaPhase:
        assert self.status is not None
        return self.status.phase

    def step(self, name: str) -> StepStatus:
        assert self.status is not None
        return self.status.step(name)

    def error(self, name: str, kind: CommandKind = CommandKind.EXECUTE) -> ErrorInfo:
        """The last error of a step (or of its compensation); fails the test if there is none."""
        st = self.step(name)
        error = st.error if kind is CommandKind.EXECUTE else (st.compensation or st).error
        assert error is not None, f"{name} has no {kind.value} error"
        return error

    def phases(self) -> dict[str, StepPhase]:
        assert self.status is not None
        return {s.name: s.phase for s in self.status.steps}

    def sent_names(self, kind: CommandKind = CommandKind.EXECUTE) -> list[str]:
        return [c.step for c in self.sent if c.kind is kind]

    def in_flight(self) -> list[Command]:
        """What the last decision left unanswered, as a republish would send it again."""
        in_flight = self.decisions[-1].in_flight
        return in_flight.commands(in_flight.dispatch_ids)


__all__ = ["REF", "T0", "Sim", "Verdict", "spec_of", "step"]
