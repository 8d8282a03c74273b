"""The handler SDK: register step and compensation handlers on a ``Worker`` and run it.

Everything a handler or its tests need is here (and in ``kubesaga.worker.testing``), listed in
``__all__``. Importing it loads no Kubernetes client and no kopf, and the broker client only
once ``Worker.run`` starts, so worker pods start fast and handler tests need no broker.
"""

from kubesaga.errors import PermanentError, RetryableError, SagaError
from kubesaga.models import CommandKind, ErrorInfo, JsonObject, Result, ResultStatus
from kubesaga.settings import Settings
from kubesaga.worker.app import Worker
from kubesaga.worker.context import StepContext
from kubesaga.worker.execute import Handler

__all__ = [
    "CommandKind",
    "ErrorInfo",
    "Handler",
    "JsonObject",
    "PermanentError",
    "Result",
    "ResultStatus",
    "RetryableError",
    "SagaError",
    "Settings",
    "StepContext",
    "Worker",
]
