"""The handler SDK: register step and compensation handlers on a ``Worker`` and run it.

Never imports kopf or the operator; ``kubesaga.worker.testing`` runs handlers without a broker.
"""

from kubesaga.errors import PermanentError, RetryableError, SagaError
from kubesaga.worker.app import Worker
from kubesaga.worker.context import StepContext
from kubesaga.worker.execute import Handler

__all__ = [
    "Handler",
    "PermanentError",
    "RetryableError",
    "SagaError",
    "StepContext",
    "Worker",
]
