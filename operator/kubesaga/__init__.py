"""kubesaga: a Kubernetes-native saga orchestrator.

The public API is what ``__all__`` lists: the worker SDK (``Worker``, ``StepContext`` and the
error types), the clients (``SagaClient``, ``AsyncSagaClient``, their handles and errors, see
docs/python.md) and the resource models. Everything else is internal and may change.

Names are imported on first use (PEP 562), so ``import kubesaga.worker`` in a worker pod does
not pay for the Kubernetes clients that only ``SagaClient`` and ``AsyncSagaClient`` need (about
half a second).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesaga.client import (
        ApprovalRefused,
        AsyncSagaClient,
        AsyncSagaHandle,
        Saga,
        SagaAlreadyExists,
        SagaApiError,
        SagaClient,
        SagaClientError,
        SagaHandle,
        SagaInvalid,
        SagaNotFound,
        SagaNotRedrivable,
        SagaTimeout,
    )
    from kubesaga.errors import PermanentError, RetryableError, SagaError
    from kubesaga.models import (
        RetryPolicy,
        SagaPhase,
        SagaSpec,
        SagaStatus,
        StepPhase,
        StepSpec,
    )
    from kubesaga.worker import StepContext, Worker

__version__ = "0.1.0"

_WHERE = {
    "ApprovalRefused": "kubesaga.client",
    "AsyncSagaClient": "kubesaga.client",
    "AsyncSagaHandle": "kubesaga.client",
    "PermanentError": "kubesaga.errors",
    "RetryPolicy": "kubesaga.models",
    "RetryableError": "kubesaga.errors",
    "Saga": "kubesaga.client",
    "SagaAlreadyExists": "kubesaga.client",
    "SagaApiError": "kubesaga.client",
    "SagaClient": "kubesaga.client",
    "SagaClientError": "kubesaga.client",
    "SagaError": "kubesaga.errors",
    "SagaHandle": "kubesaga.client",
    "SagaInvalid": "kubesaga.client",
    "SagaNotFound": "kubesaga.client",
    "SagaPhase": "kubesaga.models",
    "SagaSpec": "kubesaga.models",
    "SagaStatus": "kubesaga.models",
    "SagaNotRedrivable": "kubesaga.client",
    "SagaTimeout": "kubesaga.client",
    "StepContext": "kubesaga.worker",
    "StepPhase": "kubesaga.models",
    "StepSpec": "kubesaga.models",
    "Worker": "kubesaga.worker",
}
"""Public name -> the module that defines it, imported when the name is first used."""

__all__ = [
    "ApprovalRefused",
    "AsyncSagaClient",
    "AsyncSagaHandle",
    "PermanentError",
    "RetryPolicy",
    "RetryableError",
    "Saga",
    "SagaAlreadyExists",
    "SagaApiError",
    "SagaClient",
    "SagaClientError",
    "SagaError",
    "SagaHandle",
    "SagaInvalid",
    "SagaNotFound",
    "SagaNotRedrivable",
    "SagaPhase",
    "SagaSpec",
    "SagaStatus",
    "SagaTimeout",
    "StepContext",
    "StepPhase",
    "StepSpec",
    "Worker",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'kubesaga' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
