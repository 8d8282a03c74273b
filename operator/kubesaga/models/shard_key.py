"""The shard key of a saga: a label every body builder of ours sets, and the function behind it.

Operator replicas share the sagas by shard, and each replica watches only the sagas of its own
shards, filtered by the apiserver with a label selector on ``kubesaga.io/shard-key``. The key is
a pure function of the saga's namespace and name (known before the object exists, unlike its
uid), in a fixed space of ``SHARD_KEYS`` values that never changes: a saga's shard is
``key % shards``, so the label stays right whatever ``KUBESAGA_SHARDS`` an installation uses.
Clients set it at creation; the operator relabels a saga whose label disagrees with its name,
and sagas without it (plain ``kubectl apply``) are still seen, through a catch-all watch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from kubesaga.models import API_GROUP, API_VERSION, KIND

SHARD_KEY_LABEL = "kubesaga.io/shard-key"
SHARD_KEYS = 256
"""The key space, fixed for ever: ``KUBESAGA_SHARDS`` can be at most this."""


def shard_key(namespace: str, name: str) -> int:
    """The saga's key in ``range(SHARD_KEYS)``: first 8 bytes of sha256("<namespace>/<name>")."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SHARD_KEYS


def with_shard_key(namespace: str, name: str, labels: Mapping[str, str] | None) -> dict[str, str]:
    """``labels`` (the user's, kept) plus the shard-key label the saga must carry."""
    return {**(labels or {}), SHARD_KEY_LABEL: str(shard_key(namespace, name))}


def labelled_key(labels: Mapping[str, str] | None) -> int | None:
    """The key a saga's labels carry, or None when it has none or an invalid one (such a saga is
    seen by the catch-all watch, not by a shard's)."""
    value = (labels or {}).get(SHARD_KEY_LABEL)
    if value is None or not (value.isascii() and value.isdigit()) or str(int(value)) != value:
        return None
    key = int(value)
    return key if key < SHARD_KEYS else None


def saga_manifest(
    namespace: str, name: str, spec: Mapping[str, Any], labels: Mapping[str, str] | None
) -> dict[str, Any]:
    """The Saga object to create (``spec`` in wire form): every creator of ours builds it here,
    so none can leave out the shard-key label (the user's labels kept)."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": with_shard_key(namespace, name, labels),
        },
        "spec": dict(spec),
    }
