"""Building the command messages that the engine decided to publish."""

from __future__ import annotations

import hashlib
import hmac
from typing import TypeGuard

from kubesaga.engine.graph import StepGraph
from kubesaga.models import (
    AttemptStatus,
    Command,
    CommandKind,
    SagaRef,
    SagaSpec,
    SagaStatus,
    StepSpec,
    StepStatus,
)


def make_dispatch_id(uid: str, step: str, kind: CommandKind, attempt: int, token: str) -> str:
    """``<uid>/<step>/<kind>/<attempt>/<secret>``: readable, unique per attempt, unguessable.

    The random ``token`` comes from the caller (the engine has no randomness) and is shared by
    every command of one decision (parallel steps, a compensation batch). So the id carries not
    the token but a keyed hash of the token and the rest of the id: a handler that saw one command
    can answer that command only, not its siblings dispatched in the same decision.
    """
    prefix = f"{uid}/{step}/{kind.value}/{attempt}"
    secret = hmac.new(token.encode(), prefix.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{prefix}/{secret}"


def attempt_of(step: StepStatus, kind: CommandKind) -> AttemptStatus | None:
    """The attempt a command of ``kind`` belongs to: the action's or the compensation's."""
    return step.execution if kind is CommandKind.EXECUTE else step.compensation


def awaiting_result(attempt: AttemptStatus | None) -> TypeGuard[AttemptStatus]:
    """A command was dispatched and neither its result nor its timeout was recorded yet."""
    return (
        attempt is not None
        and attempt.dispatch_id is not None
        and attempt.next_attempt_at is None
        and attempt.finished_at is None
    )


def build_command(
    ref: SagaRef,
    spec: SagaSpec,
    graph: StepGraph,
    status: SagaStatus,
    step: StepSpec,
    kind: CommandKind,
) -> Command:
    """The command for the attempt of ``step`` now recorded in ``status``.

    Built from status alone, so a command re-published after a crash is identical to the first.
    """
    st = status.step(step.name)
    attempt = attempt_of(st, kind)
    assert attempt is not None and attempt.dispatch_id is not None
    action = step.action if kind is CommandKind.EXECUTE else step.compensation
    assert action is not None
    outputs = {}
    for name in graph.ancestors(step.name):
        output = status.step(name).output
        if output is not None:
            outputs[name] = output
    return Command(
        dispatch_id=attempt.dispatch_id,
        saga=ref,
        step=step.name,
        kind=kind,
        action=action,
        attempt=attempt.attempt,
        input=step.input,
        context=spec.context,
        outputs=outputs,
        output=st.output if kind is CommandKind.COMPENSATE else None,
        deadline=attempt.attempt_deadline,
        dispatched_at=attempt.dispatched_at,
    )
