"""The sagas of a chaos run, and how the run follows them: one watch over the namespace.

The mix: five kinds whose expected final phase is known (``EXPECTED``); step sleeps are random
so faults land mid-step. ``NamespaceWatch`` keeps the newest copy of each Saga and the times the
figures need (when each saga was first seen final, when any status last changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.models.shard_key import SHARD_KEY_LABEL, SHARD_KEYS, shard_key
from kubesaga.store import watching

FINAL = ("Completed", "Compensated", "Failed")
LABEL_PATCH_EVERY_S = 0.1

EXPECTED = {
    "ok": "Completed",
    "fail": "Compensated",
    "retry": "Completed",
    "dag-ok": "Completed",
    "dag-fail": "Compensated",
}
KINDS = tuple(EXPECTED)


def saga_steps(kind: str, prefix: str, rng: random.Random) -> list[dict[str, Any]]:
    """The steps of one saga of ``kind``; sleeps are random so kills land mid-step."""
    policy = {"maxAttempts": 3, "backoffSeconds": 0.2, "backoffFactor": 1.0}

    def step(name: str, **kw: Any) -> dict[str, Any]:
        spec_keys = {"dependsOn"}
        entry: dict[str, Any] = {
            "name": name,
            "action": f"{prefix}.do",
            "compensation": f"{prefix}.undo",
            "retry": policy,
            "compensationRetry": policy,
            "input": {
                "sleep": round(rng.uniform(0.05, 0.6), 3),
                "undo_sleep": round(rng.uniform(0.05, 0.3), 3),
                **{k: v for k, v in kw.items() if k not in spec_keys},
            },
        }
        entry.update({k: v for k, v in kw.items() if k in spec_keys})
        return entry

    if kind == "ok":
        return [step("a"), step("b"), step("c")]
    if kind == "fail":
        return [step("a", undo_flaky=True), step("b"), step("c", fail="permanent")]
    if kind == "retry":
        return [step("a"), step("b", fail="retryable-once"), step("c")]
    if kind == "dag-ok":
        return [
            step("a"),
            step("b", dependsOn=["a"]),
            step("c", dependsOn=["a"]),
            step("d", dependsOn=["b", "c"]),
        ]
    assert kind == "dag-fail"
    return [
        step("a"),
        step("b", dependsOn=["a"], sleep=round(rng.uniform(0.5, 1.0), 3)),
        step("c", dependsOn=["a"], sleep=0.05, fail="permanent"),
        step("d", dependsOn=["b", "c"]),
    ]


class NamespaceWatch:
    """One watch over the namespace: the newest copy of every Saga, and when all are final."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api = k8s.CustomObjectsApi(api)
        self.namespace = namespace
        self.objects: dict[str, Mapping[str, Any]] = {}
        self.expected: set[str] = set()
        self.creating = True
        self.all_final = asyncio.Event()
        self.final_at: dict[str, float] = {}
        """``time.monotonic()`` when each saga was first seen in a final phase."""
        self.status_changes: list[float] = []
        """When any saga's status was seen to change (progress; label patches do not count)."""

    def phase(self, name: str) -> str | None:
        obj = self.objects.get(name)
        status = (obj or {}).get("status") or {}
        phase = status.get("phase")
        return str(phase) if phase else None

    def _check(self) -> None:
        if not self.creating and all(self.phase(n) in FINAL for n in self.expected):
            self.all_final.set()

    def done_creating(self) -> None:
        self.creating = False
        self._check()

    def _observe(self, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"]["name"]
        known = self.objects.get(name)
        rv = int(obj["metadata"]["resourceVersion"])
        if known is None or int(known["metadata"]["resourceVersion"]) < rv:
            self.objects[name] = obj
            if known is None or known.get("status") != obj.get("status"):
                self.status_changes.append(time.monotonic())
        if self.phase(name) in FINAL:
            self.final_at.setdefault(name, time.monotonic())
            self._check()

    async def run(self) -> None:
        """Follow every saga of the namespace (``store.watching``: re-lists after 410 Gone)."""
        async for kind, obj in watching.follow(
            self.api.list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            self.namespace,
            PLURAL,
            watch_timeout=120,
        ):
            if kind != "DELETED":
                self._observe(obj)


async def patch_labels(
    api: k8s.ApiClient, namespace: str, names: list[str], counts: Counter[str], stop: asyncio.Event
) -> None:
    """Another client touching the Sagas: label patches bump resourceVersion -> 409s; every
    fifth also moves the saga between the operator's watches (its shard-key label removed, or
    set to another shard's key, which the operator sets right)."""
    custom: Any = k8s.CustomObjectsApi(api)
    rng = random.Random(7)
    n = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LABEL_PATCH_EVERY_S)
        if not names:
            continue
        n += 1
        name = rng.choice(names)
        labels: dict[str, str | None] = {"chaos.kubesaga.io/touched": str(n)}
        if n % 5 == 0:  # move it between watches: to the catch-all, or mislabelled (set back)
            wrong = str((shard_key(namespace, name) + 1) % SHARD_KEYS)
            labels[SHARD_KEY_LABEL] = None if n % 10 else wrong
        try:
            async with asyncio.timeout(10):
                await custom.patch_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {"metadata": {"labels": labels}},
                    _content_type="application/merge-patch+json",
                )
            counts["patches"] += 1
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError):  # restarts too
            counts["errors"] += 1
