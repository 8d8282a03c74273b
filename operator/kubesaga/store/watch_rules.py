"""What a watch loop does with what the apiserver sends: pure rules, shared by both transports.

``store.watching.follow`` (kubernetes_asyncio) and the synchronous client's watch (the official
``kubernetes`` package) differ only in how they talk to the apiserver; the rules for reading a
listing and surviving a failed watch live here once, so the two cannot drift apart. This module
imports no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

WATCH_TIMEOUT_S = 300
"""How long one watch request lasts on the server before we watch again from the last version."""
IDLE_TIMEOUT_S = 90.0
"""The apiserver sends a bookmark about every minute to a watch that asks for them: a watch that
has delivered nothing for longer is presumed dead (its connection silent) and opened again."""
MAX_RETRY_AFTER_S = 10.0
RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits before watching again after the apiserver was unreachable or failing (5xx), in a row."""


class Recovery(Enum):
    """What to do after a list or watch request failed with an HTTP status."""

    RELIST = "relist"
    """410 Gone: the resourceVersion left the watch cache; list again and watch from there."""
    BACK_OFF = "back-off"
    """429 Too Many Requests (a new CRD's storage is still initialising): wait Retry-After."""
    RETRY = "retry"
    """5xx: the apiserver is up, its storage (etcd) is not yet: wait (``reconnect_backoff``)
    and watch again from the same version. So are a refused, reset or silent connection."""
    RAISE = "raise"
    """Anything else is the caller's problem."""


def recovery(status: int | None) -> Recovery:
    """The rule for a failed list or watch request with HTTP ``status``."""
    if status == 410:
        return Recovery.RELIST
    if status == 429:
        return Recovery.BACK_OFF
    if status is not None and status >= 500:
        return Recovery.RETRY
    return Recovery.RAISE


def reconnect_backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failed watches in a row (5xx or no connection)."""
    return RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)]


def retry_after(headers: Mapping[str, str] | None) -> float:
    """The server's Retry-After (seconds), bounded; 1 s when it gave none."""
    try:
        return min(float((headers or {}).get("Retry-After", "1")), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


def listed_items(listing: Any) -> list[Any]:
    """The objects of a list response: a dict (custom objects) or a typed list model."""
    items = listing.get("items") if isinstance(listing, dict) else listing.items
    return list(items or [])


def resource_version(obj: Any) -> str | None:
    """``metadata.resourceVersion`` of a dict or typed object (or list), if it has one."""
    if isinstance(obj, dict):
        version = (obj.get("metadata") or {}).get("resourceVersion")
    else:
        version = getattr(getattr(obj, "metadata", None), "resource_version", None)
    return str(version) if version else None
