"""Commands (operator -> worker) and results (worker -> operator) carried by RabbitMQ.

These models are the protocol: docs/protocol.md and the JSON Schemas in docs/schemas/ are
generated from them, so a handler can be written in any language.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from kubesaga.models._base import JsonObject, WireModel
from kubesaga.models.status import ErrorInfo

PROTOCOL_VERSION: Literal[1] = 1


class CommandKind(StrEnum):
    """Run the step's action, or undo it with its compensation."""

    EXECUTE = "execute"
    COMPENSATE = "compensate"


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class SagaRef(WireModel):
    """Which Saga object a message belongs to (validated: a bad reference is malformed)."""

    namespace: str = Field(max_length=63, pattern=DNS_LABEL)
    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    uid: str = Field(min_length=1, max_length=128)
    """metadata.uid: tells apart two sagas that reused a name."""


class Command(WireModel):
    """Asks a worker to run one attempt of an action or compensation."""

    version: Literal[1] = PROTOCOL_VERSION
    dispatch_id: str = Field(min_length=1, max_length=512)
    """Unique per attempt (saga uid, step, kind, attempt and a random part); the AMQP message_id.
    Redeliveries carry the same id, so handlers can recognise them."""
    saga: SagaRef
    step: str
    kind: CommandKind
    action: str
    """The registered action (or compensation) name to run."""
    attempt: int = Field(ge=1)
    """Counts from 1; the same number as status.steps[].attempt (or .compensation.attempt)."""
    input: JsonObject = Field(default_factory=dict)
    context: JsonObject = Field(default_factory=dict)
    outputs: dict[str, JsonObject] = Field(default_factory=dict)
    """Outputs of the steps this step depends on, directly or not."""
    output: JsonObject | None = None
    """For compensate: the compensated step's own output (None if it never succeeded)."""
    deadline: datetime | None = None
    """When the operator stops waiting for this attempt (timeoutSeconds), if any."""
    dispatched_at: datetime | None = None
    """When the operator recorded this attempt as dispatched (the same on a re-publication)."""


class ResultStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Result(WireModel):
    """A worker's answer to one command."""

    version: Literal[1] = PROTOCOL_VERSION
    dispatch_id: str = Field(min_length=1, max_length=512)
    """Copied from the command; a result with an unknown or old id is dead-lettered."""
    saga: SagaRef
    step: str
    kind: CommandKind
    attempt: int = Field(ge=1)
    status: ResultStatus
    output: JsonObject | None = None
    """What the action returned (succeeded execute results only)."""
    error: ErrorInfo | None = None
    """Why it failed (failed results only)."""
    worker: str | None = None
    """Name of the worker that ran it, for logs."""

    @classmethod
    def answering(
        cls,
        command: Command,
        *,
        output: JsonObject | None = None,
        error: ErrorInfo | None = None,
        worker: str | None = None,
    ) -> Result:
        """The result of ``command``: failed when ``error`` is given, else succeeded."""
        return cls(
            dispatch_id=command.dispatch_id,
            saga=command.saga,
            step=command.step,
            kind=command.kind,
            attempt=command.attempt,
            status=ResultStatus.FAILED if error is not None else ResultStatus.SUCCEEDED,
            output=output if error is None else None,
            error=error,
            worker=worker,
        )

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Result:
        if self.status is ResultStatus.FAILED and self.error is None:
            raise ValueError("a failed result must carry an error")
        if self.status is ResultStatus.SUCCEEDED and self.error is not None:
            raise ValueError("a succeeded result must not carry an error")
        return self
