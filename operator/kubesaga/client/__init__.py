"""The Python clients: start and follow Sagas (never imports kopf or the broker).

``SagaClient`` (blocking, on the official ``kubernetes`` package) and ``AsyncSagaClient``
(kubernetes_asyncio) are loaded on first use: importing this package, its errors or its handles
costs no Kubernetes client, so a worker or a web app's error handling stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kubesaga.client.errors import (
    ApprovalRefused,
    SagaAlreadyExists,
    SagaApiError,
    SagaClientError,
    SagaInvalid,
    SagaNotFound,
    SagaNotRedrivable,
    SagaTimeout,
)
from kubesaga.client.handles import AsyncSagaHandle, SagaHandle
from kubesaga.client.saga import Saga

if TYPE_CHECKING:
    from kubesaga.client.async_client import AsyncSagaClient
    from kubesaga.client.sync_client import SagaClient

__all__ = [
    "ApprovalRefused",
    "AsyncSagaClient",
    "AsyncSagaHandle",
    "Saga",
    "SagaAlreadyExists",
    "SagaApiError",
    "SagaClient",
    "SagaClientError",
    "SagaHandle",
    "SagaInvalid",
    "SagaNotFound",
    "SagaNotRedrivable",
    "SagaTimeout",
]

LAZY = {
    "AsyncSagaClient": "kubesaga.client.async_client",
    "SagaClient": "kubesaga.client.sync_client",
}
"""Names imported on first use, and the module each comes from."""


def __getattr__(name: str) -> Any:
    home = LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'kubesaga.client' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
