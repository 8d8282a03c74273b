"""What a handler gets to see of the command it runs."""

from __future__ import annotations

import warnings
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
    dependency_outputs: Mapping[str, JsonObject]
    """Outputs of the steps this step depends on, directly or not, by step name."""
    step_output: JsonObject | None
    """For a compensation: the output of the step it undoes (None if that step never
    succeeded, e.g. compensated because of compensateOnFailure). None for a step."""
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

    @property
    def outputs(self) -> Mapping[str, JsonObject]:
        """Deprecated alias of ``dependency_outputs`` (one letter away from ``output``, which
        meant something else); to be removed in 0.3."""
        _deprecated("outputs", "dependency_outputs")
        return self.dependency_outputs

    @property
    def output(self) -> JsonObject | None:
        """Deprecated alias of ``step_output``; to be removed in 0.3."""
        _deprecated("output", "step_output")
        return self.step_output

    @classmethod
    def from_command(cls, command: Command) -> StepContext:
        return cls(
            input=command.input,
            context=command.context,
            dependency_outputs=command.outputs,
            step_output=command.output,
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


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"StepContext.{old} is deprecated; use StepContext.{new}",
        DeprecationWarning,
        stacklevel=3,
    )
