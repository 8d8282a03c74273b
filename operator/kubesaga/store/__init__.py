"""Adapter to the Kubernetes API: Saga objects and their status as the atomic store."""

from kubesaga.store.kube import load_configuration, make_api_client
from kubesaga.store.sagas import Conflict, NotFound, SagaObject, SagaStore

__all__ = [
    "Conflict",
    "NotFound",
    "SagaObject",
    "SagaStore",
    "load_configuration",
    "make_api_client",
]
