"""One watch per owned shard, filtered by the apiserver: a replica receives only its own sagas.

kopf's single watch of every Saga made each replica receive and decode every saga's events, and
drop other shards' late, after kopf's whole per-event pipeline: a cost per step of the whole
installation, paid by every replica. Here each owned shard has its own list-then-watch
(``store.watching.follow``: bookmarks, 410 relist, reconnect) with the label selector of its
shard keys (``shards.selector``), started when the shard is gained (its listing delivers every
saga of the shard: first sight, Reconcile, the resume path) and cancelled when it is lost.
kopf keeps a catch-all watch for the sagas no shard watch covers (``handlers.py``).

A saga whose valid label disagrees with its name (edited by hand) is relabelled to the key of its
name, which moves it into its owner's watch. Moves between watches arrive as DELETED in one and
ADDED in the other, in either order: ``Orchestrator.vanished`` confirms before dropping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kubernetes_asyncio import client

from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.models.shard_key import SHARD_KEY_LABEL, labelled_key, shard_key
from kubesaga.operator.cache import Key
from kubesaga.operator.metrics import Metrics
from kubesaga.operator.orchestrator import Orchestrator
from kubesaga.operator.scope import watches
from kubesaga.operator.shards import selector
from kubesaga.store import SagaObject
from kubesaga.store.watch_rules import reconnect_backoff
from kubesaga.store.watching import follow

log = logging.getLogger("kubesaga.operator.shards")

GLOB = frozenset("*?[!")
REPEAT_SECONDS = 60.0
"""The same trouble with the shard watches is logged again after this long, not on each retry."""


def describe(error: BaseException) -> str:
    """What a failed shard watch tells the person reading the log: the cause, and what to do."""
    status = getattr(error, "status", None)
    if status == 404:
        return (
            "the Saga CRD is not installed (404 listing sagas): "
            "kubesaga crd | kubectl apply --server-side -f -"
        )
    if status == 403:
        return (
            f"listing sagas is forbidden (403 {getattr(error, 'reason', '')}): "
            "grant list and watch on sagas.kubesaga.io"
        )
    if status is not None:
        return f"the apiserver answered {status} {getattr(error, 'reason', '')}"
    return repr(error)


class Trouble:
    """Says what is wrong with the shard watches once, not once per shard and retry: 16
    watches failing on a missing CRD logged 16 lines every few seconds, each an empty
    ``ApiException()``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last: tuple[str, float] | None = None

    def report(self, error: BaseException) -> None:
        text, now = describe(error), self.clock()
        if self.last is not None and self.last[0] == text and now - self.last[1] < REPEAT_SECONDS:
            return
        self.last = (text, now)
        log.warning("shard watches: %s; watching again", text)


def watch_targets(patterns: Sequence[str]) -> list[str | None]:
    """The namespaces a shard's watch lists, one request each; ``[None]``: cluster-wide.

    Plain names are watched one by one (a namespaced Role is enough). A glob or a negation
    cannot be a request: watch cluster-wide (a ClusterRole to list and watch sagas) and keep
    the namespaces ``scope.watches`` accepts, as kopf's watch does for the same patterns.
    """
    if not patterns or any(GLOB & set(p) for p in patterns):
        return [None]
    return list(dict.fromkeys(patterns))


class Labels(Protocol):
    """What relabelling needs of the store (``SagaStore.merge_labels``)."""

    async def merge_labels(
        self, namespace: str, name: str, labels: Mapping[str, str], uid: str | None = None
    ) -> SagaObject: ...


class ShardWatches:
    """The watches of the owned shards, and which sagas they delivered (forgotten on loss)."""

    def __init__(
        self,
        api: client.ApiClient,
        store: Labels,
        orchestrator: Orchestrator,
        shards: int,
        shard_of: Callable[[Key], int],
        namespaces: Sequence[str],
        metrics: Metrics,
        idle_timeout: float,
    ) -> None:
        self.api = api
        self.store = store
        self.orchestrator = orchestrator
        self.shards = shards
        self.shard_of = shard_of
        self.patterns = list(namespaces)
        self.targets = watch_targets(self.patterns)
        self.events = metrics.watch_events.labels(watch="shard")
        self.idle_timeout = idle_timeout
        self.delivered: set[Key] = set()
        """Sagas observed from a shard watch: not kept once their shard is lost, since no
        watch of this replica updates them any more."""
        self._watches: dict[int, list[asyncio.Task[None]]] = {}
        self._relabelled: set[tuple[Key, str]] = set()
        self.trouble = Trouble()

    def start(self, shard: int) -> None:
        if shard in self._watches:
            return
        self._watches[shard] = [
            asyncio.create_task(self._follow(shard, namespace), name=f"kubesaga shard {shard}")
            for namespace in self.targets
        ]

    async def stop(self, shards: set[int]) -> list[Key]:
        """Cancel the watches of ``shards``; return the sagas they delivered (to forget)."""
        stopping = [task for s in shards for task in self._watches.pop(s, [])]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        gone = [key for key in self.delivered if self.shard_of(key) in shards]
        self.delivered.difference_update(gone)
        return gone

    async def close(self) -> None:
        await self.stop(set(self._watches))

    async def _follow(self, shard: int, namespace: str | None) -> None:
        objects = client.CustomObjectsApi(self.api)
        args: tuple[Any, ...] = (
            (objects.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL)
            if namespace is not None
            else (objects.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL)
        )
        failures = 0
        while True:
            try:
                events = follow(
                    *args,
                    label_selector=selector(shard, self.shards),
                    idle_timeout=self.idle_timeout,
                )
                async with contextlib.aclosing(events):
                    async for kind, raw in events:
                        failures = 0
                        self.on_event(kind, SagaObject(raw))
            except Exception as error:  # a 404, a 403 or a bug: say so, watch again, never stop
                self.trouble.report(error)
                await asyncio.sleep(reconnect_backoff(failures))
                failures += 1

    def on_event(self, kind: str, obj: SagaObject) -> None:
        """One event of a shard watch (also the unit tests' entry)."""
        if self.targets == [None] and not watches(obj.namespace, self.patterns):
            return
        self.events.inc()
        if kind == "DELETED":
            self.delivered.discard(obj.key)
            self.orchestrator.vanished(obj)
            return
        right = shard_key(obj.namespace, obj.name)
        if labelled_key(obj.metadata.get("labels")) != right:
            self._relabel(obj, right)
        if self.orchestrator.observe(obj, keep_unowned=False):
            self.delivered.add(obj.key)

    def _relabel(self, obj: SagaObject, right: int) -> None:
        """Move a saga whose label was edited to the watch of its owner by name."""
        if (obj.key, obj.uid) not in self._relabelled:
            self._relabelled.add((obj.key, obj.uid))
            log.warning(
                "saga %s/%s: label %s=%s does not match its name; setting it to %d",
                obj.namespace,
                obj.name,
                SHARD_KEY_LABEL,
                obj.metadata.get("labels", {}).get(SHARD_KEY_LABEL),
                right,
            )
        self.orchestrator.tasks.spawn(
            self._patch_label(obj, str(right)), name=f"relabel {obj.namespace}/{obj.name}"
        )

    async def _patch_label(self, obj: SagaObject, value: str) -> None:
        try:
            labels = {SHARD_KEY_LABEL: value}
            await self.store.merge_labels(obj.namespace, obj.name, labels, obj.uid)
        except Exception as error:  # gone, or a newer incarnation: nothing to move
            log.info("saga %s/%s: relabelling failed: %r", obj.namespace, obj.name, error)
