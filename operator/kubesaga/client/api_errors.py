"""Turning the apiserver's refusals into the client's errors, for either Kubernetes package.

``kubernetes.client.ApiException`` and ``kubernetes_asyncio``'s have the same shape (``status``,
``reason``, ``body`` holding a ``Status`` object as JSON, ``headers``): the mapping reads that
shape, so it is written once and imports neither package.
"""

from __future__ import annotations

import json
from typing import Any

from kubesaga.client.errors import SagaApiError, SagaClientError, SagaInvalid, SagaNotFound
from kubesaga.models import PLURAL

MISSING_CRD_HINT = (
    "the Saga resource is not installed on this cluster: install the chart, or run "
    "`kubesaga crd | kubectl apply --server-side -f -`"
)


def api_status(error: Any) -> dict[str, Any]:
    """The ``Status`` object the apiserver sent with the error (empty when it sent none)."""
    body = getattr(error, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        status = json.loads(body)
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def translate(error: Any, *, namespace: str = "", name: str = "") -> SagaClientError:
    """The client error for an ``ApiException`` raised while acting on saga ``namespace/name``."""
    code = int(getattr(error, "status", 0) or 0)
    status = api_status(error)
    reason = str(status.get("reason") or getattr(error, "reason", "") or "")
    message = str(status.get("message") or reason or f"HTTP {code}")
    details: dict[str, Any] = status.get("details") or {}
    where = f"{namespace}/{name}" if name else namespace
    if code == 404 and details.get("kind") == PLURAL:
        return SagaNotFound(
            f"saga {where} not found (the apiserver said: {message})",
            namespace=namespace,
            name=name,
        )
    if code == 404 and not details:
        message = f"{message}; {MISSING_CRD_HINT}"
    if code == 422:
        causes = [
            (str(c.get("field", "")), str(c.get("message", "")))
            for c in details.get("causes") or []
            if isinstance(c, dict)
        ]
        if any(field == "metadata.uid" for field, _ in causes):
            # Only a handle sends metadata.uid (compensate_patch): the saga it refers to is gone.
            return SagaNotFound(
                f"saga {where} was deleted and created again since the handle read it; get a "
                "new handle",
                namespace=namespace,
                name=name,
            )
        return SagaInvalid(message, namespace=namespace, name=name, causes=causes)
    subject = f"saga {where}" if name else f"sagas in {namespace or 'all namespaces'}"
    return SagaApiError(
        f"the Kubernetes API refused the request on {subject}: {code} {reason}: {message}",
        status=code,
        reason=reason,
        namespace=namespace,
        name=name,
    )
