"""The observed state of a Saga, written only by the operator through the status subresource."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from kubesaga.models import limits
from kubesaga.models._base import JsonObject, WireModel


class SagaPhase(StrEnum):
    """Where the saga as a whole stands. Completed, Compensated and Failed are final."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    """spec.suspend holds it: nothing is dispatched until it resumes to status.resumePhase."""
    COMPLETED = "Completed"
    COMPENSATING = "Compensating"
    COMPENSATED = "Compensated"
    FAILED = "Failed"

    @property
    def is_final(self) -> bool:
        return self in (SagaPhase.COMPLETED, SagaPhase.COMPENSATED, SagaPhase.FAILED)


class StepPhase(StrEnum):
    """Where one step stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    AWAITING_APPROVAL = "AwaitingApproval"
    """An approval step whose dependencies succeeded, waiting for ``kubesaga approve|reject``."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    COMPENSATING = "Compensating"
    COMPENSATED = "Compensated"
    COMPENSATION_FAILED = "CompensationFailed"


class ErrorInfo(WireModel):
    """Why an attempt failed, as reported by the handler (or by the operator for timeouts)."""

    message: str
    """Human-readable reason (the engine keeps the first 1024 characters)."""
    type: str = "Error"
    """Error class or code, e.g. PaymentDeclined, Timeout, OutputTooLarge."""
    retryable: bool = False
    """Whether the retry policy may try again."""
    retry_after_seconds: float | None = Field(default=None, ge=0, le=limits.MAX_RETRY_AFTER_SECONDS)
    """A retryable error's wish for the next attempt's delay (e.g. a rate limit's Retry-After).
    The engine waits the longer of it and the policy's backoff, but never more than the policy's
    maxBackoffSeconds: the step's policy stays in charge."""


class StatusModel(WireModel):
    """Status is written by the operator: tolerate fields a newer operator may add."""

    model_config = ConfigDict(extra="ignore")


class AttemptStatus(StatusModel):
    """Bookkeeping of the current attempt, shared by a step and by its compensation."""

    attempt: int = Field(default=0, ge=0)
    """Attempts dispatched so far, counting from 1; 0 means never dispatched."""
    dispatch_id: str | None = None
    """Id of the command now in flight; a result must carry it to be applied."""
    dispatched_at: datetime | None = None
    """When the command in flight was recorded (handler latency is measured from here)."""
    attempt_deadline: datetime | None = None
    """When the attempt in flight times out (from timeoutSeconds)."""
    next_attempt_at: datetime | None = None
    """When the next attempt is due after a retryable failure (backoff)."""
    started_at: datetime | None = None
    """First dispatch."""
    finished_at: datetime | None = None
    """When the outcome was recorded."""
    error: ErrorInfo | None = None
    """Last error."""


class CompensationStatus(AttemptStatus):
    """Progress of a step's compensation."""


class ApprovalOutcome(StrEnum):
    """How an approval step's wait ended."""

    APPROVED = "Approved"
    REJECTED = "Rejected"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"
    """The saga began compensating while the step waited: nothing is left to approve."""


class ApprovalStatus(StatusModel):
    """The record of an approval step: when it was asked, and who answered what and why."""

    requested_at: datetime
    """When the step's dependencies had succeeded and the wait began."""
    timeout_at: datetime | None = None
    """When the wait times out (from approval.timeoutSeconds)."""
    outcome: ApprovalOutcome | None = None
    """Approved, Rejected, TimedOut or Cancelled; absent while waiting."""
    by: str | None = None
    """Who answered (spec.approvals[].by)."""
    reason: str | None = None
    """Why, as the answer said."""
    answered_at: datetime | None = None
    """When the operator recorded the outcome."""
    answers_before: int = Field(default=0, ge=0)
    """Answers to this step already in spec.approvals when the wait began: they were given
    before the step waited, so they never count (the CRD refuses them; this is for a spec
    written past its rules)."""


class StepStatus(AttemptStatus):
    """Progress and outcome of one step."""

    name: str = Field(max_length=limits.MAX_NAME_LENGTH)
    """The step's name, as in spec.steps."""
    phase: StepPhase = StepPhase.PENDING
    """Pending, Running, Succeeded, Failed, Skipped, Compensating, Compensated or
    CompensationFailed."""
    output: JsonObject | None = None
    """What the action returned; kept through compensation."""
    compensation: CompensationStatus | None = None
    """Progress of the compensation, once it started."""
    compensation_history: list[CompensationStatus] | None = Field(
        default=None, max_length=limits.MAX_REDRIVES
    )
    """Compensations given up before a redrive (spec.redrive), oldest first; ``compensation``
    is the one since the last redrive."""
    approval: ApprovalStatus | None = None
    """An approval step's request and answer, once it began to wait."""

    @property
    def execution(self) -> AttemptStatus:
        """The attempt of the step's action, as ``compensation`` is the attempt of its undo.

        The wire format puts the action's attempt fields in the step itself
        (``status.steps[].attempt``, ``.dispatchId``, ...), which is why this class extends
        ``AttemptStatus``; changing that would break every status already written. Code that
        works on an attempt takes ``step.execution`` or ``step.compensation``, never the step,
        so it always says which of the two it means.
        """
        return self


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A Kubernetes-style condition (kubectl wait --for=condition=Finished)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: datetime


class SagaStatus(StatusModel):
    """Observed state of the saga; the status subresource is the atomic store."""

    phase: SagaPhase = SagaPhase.PENDING
    """Pending, Running, Suspended, Completed, Compensating, Compensated or Failed."""
    steps: list[StepStatus] = Field(default_factory=list, max_length=limits.MAX_STEPS)
    """One entry per spec step, in spec order."""
    message: str = Field(default="", max_length=limits.MAX_STATUS_MESSAGE_CHARS)
    """What happened last, for humans."""
    reason: str | None = None
    """Machine-readable cause of the current phase, e.g. StepFailed, CompensationRequested."""
    progress: str = ""
    """Succeeded steps over all steps, e.g. 2/3 (a printer column)."""
    current_step: str | None = None
    """Steps in flight, comma separated (a printer column)."""
    conditions: list[Condition] = Field(default_factory=list, max_length=8)
    """Finished (True once final) and Valid (False when the spec was rejected)."""
    observed_generation: int | None = None
    """The metadata.generation the operator last acted on."""
    started_at: datetime | None = None
    """When the operator accepted the saga."""
    finished_at: datetime | None = None
    """When the saga reached a final phase."""
    deadline_at: datetime | None = None
    """When the saga deadline passes (from spec.deadlineSeconds)."""
    compensation_requested_at: datetime | None = None
    """When compensation began, for whatever reason."""
    resume_phase: SagaPhase | None = None
    """The phase a Suspended saga returns to when spec.suspend is unset (Running or
    Compensating)."""
    suspended_at: datetime | None = None
    """When the saga was suspended (set while Suspended)."""
    observed_redrive: int | None = None
    """The last spec.redrive the operator acted on, redriving the saga or refusing to."""

    def step(self, name: str) -> StepStatus:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


def parse_status(raw: object) -> SagaStatus | None:
    """An existing status, or None for a saga the operator has not seen yet."""
    if not raw:
        return None
    return SagaStatus.model_validate(raw)
