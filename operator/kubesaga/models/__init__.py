"""Pydantic models of the Saga resource and of the message protocol. No I/O."""

from kubesaga.models import limits
from kubesaga.models._base import JsonObject, WireModel
from kubesaga.models.messages import (
    PROTOCOL_VERSION,
    Command,
    CommandKind,
    Result,
    ResultStatus,
    SagaRef,
)
from kubesaga.models.spec import (
    ApprovalAnswer,
    ApprovalSpec,
    RetryPolicy,
    SagaSpec,
    StepSpec,
    parse_spec,
)
from kubesaga.models.status import (
    ApprovalOutcome,
    ApprovalStatus,
    AttemptStatus,
    CompensationStatus,
    Condition,
    ConditionStatus,
    ErrorInfo,
    SagaPhase,
    SagaStatus,
    StepPhase,
    StepStatus,
    parse_status,
)

API_GROUP = "kubesaga.io"
API_VERSION = "v1alpha1"
KIND = "Saga"
PLURAL = "sagas"
SINGULAR = "saga"
SHORT_NAMES = ["sg"]

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "PLURAL",
    "PROTOCOL_VERSION",
    "SHORT_NAMES",
    "SINGULAR",
    "ApprovalAnswer",
    "ApprovalOutcome",
    "ApprovalSpec",
    "ApprovalStatus",
    "AttemptStatus",
    "Command",
    "CommandKind",
    "CompensationStatus",
    "Condition",
    "ConditionStatus",
    "ErrorInfo",
    "JsonObject",
    "Result",
    "ResultStatus",
    "RetryPolicy",
    "SagaPhase",
    "SagaRef",
    "SagaSpec",
    "SagaStatus",
    "StepPhase",
    "StepSpec",
    "StepStatus",
    "WireModel",
    "limits",
    "parse_spec",
    "parse_status",
]
