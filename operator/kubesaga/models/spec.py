"""The desired state of a Saga: what the user writes in ``saga.yaml``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, JsonValue, field_validator, model_validator

from kubesaga.models import limits
from kubesaga.models._base import JsonObject, WireModel

StepName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=limits.MAX_NAME_LENGTH,
        pattern=limits.STEP_NAME_PATTERN,
    ),
]
ActionName = Annotated[
    str,
    Field(min_length=1, max_length=limits.MAX_ACTION_LENGTH, pattern=limits.ACTION_PATTERN),
]


class RetryPolicy(WireModel):
    """How often and how fast a step (or its compensation) is retried after a retryable error.

    Only errors marked retryable (a handler's ``RetryableError``, a timeout, a lost worker) are
    retried; permanent errors end the step at once.
    """

    max_attempts: int = Field(default=3, ge=1, le=limits.MAX_ATTEMPTS)
    """Attempts in all, counting the first (1 = never retry)."""
    backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    """Delay before the second attempt."""
    backoff_factor: float = Field(default=2.0, ge=1, le=10)
    """Each further delay is the previous one times this factor."""
    max_backoff_seconds: float = Field(default=60.0, ge=0, le=86400)
    """Upper bound of any single delay."""

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry)."""
        if attempt <= 1:
            return 0.0
        delay = self.backoff_seconds * self.backoff_factor ** (attempt - 2)
        return float(min(delay, self.max_backoff_seconds))


class ApprovalSpec(WireModel):
    """A step that waits for a person or another system instead of running an action.

    Nothing is published for it: once its dependencies succeeded it waits for an answer in
    ``spec.approvals`` (``kubesaga approve|reject``). Approved, it succeeds; rejected or timed
    out, it fails and the saga compensates as for any failed step.
    """

    timeout_seconds: float | None = Field(default=None, gt=0, le=limits.MAX_TIMEOUT_SECONDS)
    """How long to wait for an answer; absent: no limit of its own (the saga deadline holds)."""


class ApprovalAnswer(WireModel):
    """The answer to an approval step: written once, never changed (the CRD refuses both)."""

    step: StepName
    """The approval step answered."""
    approved: bool
    """True to approve (the step succeeds), false to reject (the step fails)."""
    by: str = Field(min_length=1, max_length=limits.MAX_APPROVER_LENGTH)
    """Who answered: the Kubernetes user name (the client fills it from a SelfSubjectReview)."""
    reason: str = Field(default="", max_length=limits.MAX_APPROVAL_REASON_CHARS)
    """Why, for the record and for the steps after it (they read it in the step's output)."""


APPROVAL_STEP_RULES: list[JsonValue] = [
    {
        "rule": "has(self.action) != has(self.approval)",
        "message": "a step has exactly one of action or approval",
        "messageExpression": (
            "'step \"' + self.name + '\" must have exactly one of action or approval'"
        ),
    },
    {
        "rule": (
            "!has(self.approval) || (!has(self.compensation) && !has(self.compensationRetry)"
            " && !has(self.timeoutSeconds) && !self.compensateOnFailure)"
        ),
        "message": (
            "an approval step has nothing to undo or time out: no compensation, "
            "compensationRetry, timeoutSeconds or compensateOnFailure (use approval.timeoutSeconds)"
        ),
        "messageExpression": (
            "'approval step \"' + self.name + '\" cannot have compensation, compensationRetry,"
            " timeoutSeconds or compensateOnFailure (an approval does nothing to undo;"
            " its time limit is approval.timeoutSeconds)'"
        ),
    },
]
"""CEL rules of a step, the same as ``StepSpec._one_kind`` checks in Python."""


class StepSpec(WireModel):
    """One local transaction of the saga and how to undo it (or an approval to wait for)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.dependsOn) || !(self.name in self.dependsOn)",
                    "message": "a step cannot depend on itself",
                    "messageExpression": "'step \"' + self.name + '\" cannot depend on itself'",
                    "fieldPath": ".dependsOn",
                },
                *APPROVAL_STEP_RULES,
            ]
        }
    )

    name: StepName
    """Unique within the saga; lowercase letters, digits, '-' and '_'."""
    action: ActionName | None = None
    """Registered action a worker executes (its queue is kubesaga.action.<action>); a step has
    exactly one of action and approval."""
    approval: ApprovalSpec | None = None
    """Wait for an answer (``kubesaga approve|reject``) instead of running an action."""
    compensation: ActionName | None = None
    """Registered action that undoes this step; none means nothing to undo."""
    input: JsonObject = Field(default_factory=dict)
    """Arguments handed to the action and to the compensation."""
    depends_on: list[StepName] | None = Field(
        default=None,
        max_length=limits.MAX_STEPS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Steps that must succeed first. Absent: the previous step. Empty list: none."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retry policy for retryable errors of the action."""
    compensation_retry: RetryPolicy | None = None
    """Retry policy of the compensation; absent means the same as retry."""
    timeout_seconds: float | None = Field(default=None, gt=0, le=limits.MAX_TIMEOUT_SECONDS)
    """Per-attempt time limit; an attempt that runs longer counts as a retryable failure."""
    compensate_on_failure: bool = False
    """Run the compensation even when this step failed (for steps that can partly apply)."""

    @field_validator("depends_on")
    @classmethod
    def _deps_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("dependsOn must not name a step twice")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        if (self.action is None) == (self.approval is None):
            raise ValueError(f"step {self.name!r} must have exactly one of action or approval")
        if self.approval is not None and (
            self.compensation is not None
            or self.compensation_retry is not None
            or self.timeout_seconds is not None
            or self.compensate_on_failure
        ):
            raise ValueError(
                f"approval step {self.name!r} cannot have compensation, compensationRetry, "
                "timeoutSeconds or compensateOnFailure (an approval does nothing to undo; "
                "its time limit is approval.timeoutSeconds)"
            )
        return self

    @property
    def compensation_policy(self) -> RetryPolicy:
        return self.compensation_retry or self.retry


APPROVALS_RULES: list[JsonValue] = [
    {
        "rule": (
            "!has(self.approvals) || self.approvals.all(a,"
            " has(self.steps) && self.steps.exists(s, s.name == a.step && has(s.approval)))"
        ),
        "message": "spec.approvals may only answer approval steps of this saga",
        "fieldPath": ".approvals",
    },
    {
        "rule": (
            "!has(oldSelf.approvals) || has(self.approvals)"
            " && oldSelf.approvals.all(o, self.approvals.exists(n, n == o))"
        ),
        "message": "an approval answer cannot be changed or removed once given",
        "fieldPath": ".approvals",
    },
]
"""CEL rules of ``spec.approvals``: only approval steps, append-only. That a new answer's step
is waiting needs the status, so that rule sits on the whole object (``schema/crd.py``)."""


class SagaSpec(WireModel):
    """The steps and context of one distributed transaction."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "!has(self.steps)"
                        " || self.steps.all(s, self.steps.exists_one(t, t.name == s.name))"
                    ),
                    "message": "step names must be unique",
                    "messageExpression": (
                        "'step names must be unique: \"'"
                        " + self.steps.map(s, s.name)"
                        ".filter(n, !self.steps.exists_one(t, t.name == n))[0]"
                        " + '\" is used by more than one step'"
                    ),
                    "fieldPath": ".steps",
                },
                {
                    "rule": (
                        "!has(self.steps) || self.steps.all(s, !has(s.dependsOn)"
                        " || s.dependsOn.all(d, self.steps.exists(t, t.name == d)))"
                    ),
                    "message": "dependsOn must name a step of this saga",
                    "messageExpression": (
                        "self.steps.map(s, has(s.dependsOn)"
                        " && s.dependsOn.exists(d, !self.steps.exists(t, t.name == d))"
                        " ? 'step \"' + s.name + '\" depends on \"'"
                        " + s.dependsOn.filter(d, !self.steps.exists(t, t.name == d))[0]"
                        " + '\", which is not a step of this saga' : '')"
                        ".filter(m, m != '')[0]"
                    ),
                    "fieldPath": ".steps",
                },
                {
                    "rule": (
                        "!has(oldSelf.steps) && !has(self.steps)"
                        " || has(oldSelf.steps) && has(self.steps) && self.steps == oldSelf.steps"
                    ),
                    "message": "spec.steps is immutable once the saga exists; create a new Saga",
                    "fieldPath": ".steps",
                },
                *APPROVALS_RULES,
                {
                    "rule": (
                        "!has(oldSelf.redrive)"
                        " || (has(self.redrive) && self.redrive >= oldSelf.redrive)"
                    ),
                    "message": (
                        "spec.redrive may only increase: bump it by one to redrive the saga"
                        " (kubesaga redrive NAME)"
                    ),
                    "fieldPath": ".redrive",
                },
                {
                    "rule": (
                        "!has(oldSelf.compensate) || !oldSelf.compensate"
                        " || (has(self.compensate) && self.compensate)"
                    ),
                    "message": "spec.compensate cannot be unset once requested",
                    "fieldPath": ".compensate",
                },
            ]
        }
    )

    steps: list[StepSpec] = Field(
        default_factory=list,
        max_length=limits.MAX_STEPS,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    """Steps in order; a step without dependsOn runs after the one before it."""
    context: JsonObject = Field(default_factory=dict)
    """Saga-wide data handed to every handler."""
    compensate: bool = False
    """Set to true to undo the saga: stops forward progress and compensates what succeeded."""
    deadline_seconds: float | None = Field(default=None, gt=0, le=limits.MAX_TIMEOUT_SECONDS)
    """Time limit of the whole saga from its start; when passed, the saga compensates."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the Saga this long after it reached a final phase (like Jobs)."""
    suspend: bool = False
    """Set to true to stop dispatching: attempts in flight finish and are recorded, but no
    step, retry or compensation starts until it is unset (phase Suspended meanwhile)."""
    suspend_pauses_deadline: bool = False
    """Stop the deadlineSeconds clock while suspended (by default the deadline keeps counting,
    and a saga resumed past its deadline compensates)."""
    redrive: int = Field(default=0, ge=0, le=limits.MAX_REDRIVES)
    """Increase by one to redrive a saga Failed because a compensation failed: the failed
    compensations run again, then the ones they blocked."""
    approvals: list[ApprovalAnswer] = Field(
        default_factory=list,
        max_length=limits.MAX_STEPS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["step"]},
    )
    """Answers to approval steps, one per step, append-only (``kubesaga approve|reject``)."""

    @model_validator(mode="after")
    def _names_unique(self) -> SagaSpec:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"step names must be unique: {step.name!r} appears twice")
            seen.add(step.name)
        return self

    def dependencies(self) -> dict[str, list[str]]:
        """Each step's effective dependencies (absent dependsOn = the previous step)."""
        deps: dict[str, list[str]] = {}
        previous: str | None = None
        for step in self.steps:
            if step.depends_on is None:
                deps[step.name] = [previous] if previous is not None else []
            else:
                deps[step.name] = list(step.depends_on)
            previous = step.name
        return deps

    def answer(self, step: str) -> ApprovalAnswer | None:
        """The first answer given to approval step ``step``, if any."""
        return next((a for a in self.approvals if a.step == step), None)

    def step(self, name: str) -> StepSpec:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


def parse_spec(raw: Any) -> SagaSpec:
    """Validate a raw ``spec`` mapping (as read from the API) into a SagaSpec."""
    return SagaSpec.model_validate(raw or {})
