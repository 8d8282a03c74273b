"""What a handler gets to see of the command it runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from kubesaga.models import Command, CommandKind, JsonObject


@dataclass(frozen=True)
class StepContext:
    """One attempt of one step (or of its compensation), built from the command.

    ``dispatch_id`` is the same on every redelivery of this attempt: use it as an idempotency key
    for side effects.
    """

    input: JsonObject
    context: JsonObject
    """The saga's context, shared by all its steps."""
    outputs: Mapping[str, JsonObject]
    """Outputs of the steps this step depends on, directly or not, by step name."""
    output: JsonObject | None
    """For a compensation: the compensated step's own output (None if it never succeeded)."""
    attempt: int
    """Counts from 1."""
    saga_name: str
    saga_namespace: str
    saga_uid: str
    step_name: str
    action: str
    kind: CommandKind
    dispatch_id: str
    deadline: datetime | None
    """When the operator stops waiting; the worker cancels the handler then."""
    dispatched_at: datetime | None = None
    """When the operator recorded this attempt (for latency, and for audits of the order)."""

    @classmethod
    def from_command(cls, command: Command) -> StepContext:
        return cls(
            input=command.input,
            context=command.context,
            outputs=command.outputs,
            output=command.output,
            attempt=command.attempt,
            saga_name=command.saga.name,
            saga_namespace=command.saga.namespace,
            saga_uid=command.saga.uid,
            step_name=command.step,
            action=command.action,
            kind=command.kind,
            dispatch_id=command.dispatch_id,
            deadline=command.deadline,
            dispatched_at=command.dispatched_at,
        )
