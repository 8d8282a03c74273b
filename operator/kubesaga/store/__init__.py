"""Adapter to the Kubernetes API: Saga objects and their status as the atomic store.

The names below are loaded on first use: the pure modules of this package (``watch_rules``,
``config_source``) are shared with the synchronous client, which must not pay for importing
kubernetes_asyncio and aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "Conflict": "kubesaga.store.sagas",
    "NotFound": "kubesaga.store.sagas",
    "SagaObject": "kubesaga.store.sagas",
    "SagaStore": "kubesaga.store.sagas",
    "load_configuration": "kubesaga.store.kube",
    "make_api_client": "kubesaga.store.kube",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kubesaga.store' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
