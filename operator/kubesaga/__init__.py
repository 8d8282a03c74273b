"""kubesaga: a Kubernetes-native saga orchestrator.

The public API is what ``__all__`` lists: the worker SDK (``Worker``, ``StepContext`` and the
error types), the client (``SagaClient``, ``Saga``) and the resource models. Everything else is
internal and may change.
"""

from kubesaga.client import Saga, SagaClient
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

__all__ = [
    "PermanentError",
    "RetryPolicy",
    "RetryableError",
    "Saga",
    "SagaClient",
    "SagaError",
    "SagaPhase",
    "SagaSpec",
    "SagaStatus",
    "StepContext",
    "StepPhase",
    "StepSpec",
    "Worker",
    "__version__",
]
