"""Building the command messages that the engine decided to publish."""

from __future__ import annotations

import hashlib
import hmac
from typing import TypeGuard

from kubesaga.engine.graph import StepGraph, status_problem
from kubesaga.engine.types import SagaView
from kubesaga.models import (
    AttemptStatus,
    Command,
    CommandKind,
    SagaRef,
    SagaSpec,
    SagaStatus,
    StepPhase,
    StepSpec,
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
    attempt: AttemptStatus | None = st if kind is CommandKind.EXECUTE else st.compensation
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


def inflight_commands(saga: SagaView) -> list[Command]:
    """Commands dispatched but not answered: re-published on resume or after a quiet interval.

    They carry the same dispatch ids as before, so a handler that already ran one can tell.
    """
    if saga.status is None or saga.status.observed_generation is None:
        return []  # a status the operator never adopted: nothing of it was dispatched by us
    if status_problem(saga.spec, saga.status) is not None:
        return []
    graph = StepGraph.of(saga.spec)
    commands: list[Command] = []
    for st in saga.status.steps:
        try:
            spec = saga.spec.step(st.name)
        except KeyError:
            continue
        if st.phase is StepPhase.RUNNING and in_flight(st):
            commands.append(
                build_command(saga.ref, saga.spec, graph, saga.status, spec, CommandKind.EXECUTE)
            )
        if st.phase is StepPhase.COMPENSATING and in_flight(st.compensation):
            commands.append(
                build_command(saga.ref, saga.spec, graph, saga.status, spec, CommandKind.COMPENSATE)
            )
    return commands


def in_flight(attempt: AttemptStatus | None) -> TypeGuard[AttemptStatus]:
    """A command was dispatched and neither its result nor its timeout was recorded yet."""
    return (
        attempt is not None
        and attempt.dispatch_id is not None
        and attempt.next_attempt_at is None
        and attempt.finished_at is None
    )
