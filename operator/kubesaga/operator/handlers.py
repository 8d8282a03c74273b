"""kopf wiring: watch the Sagas no shard watch covers and hand their events to the orchestrator.

Sagas carrying a valid ``kubesaga.io/shard-key`` label reach only their owner, through its shard
watches (``shard_watch.py``); kopf's watch is filtered by the apiserver to the rest (created by
plain ``kubectl``, or with an invalid label), which every replica receives and only the owner
by name decides.

``kopf.on.event`` is used instead of create/update handlers on purpose: those persist kopf's own
progress on the object (extra writes per change), while our state already lives in status.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.operator.login import connection_info
from kubesaga.operator.orchestrator import Orchestrator
from kubesaga.operator.shards import CATCHALL_SELECTOR
from kubesaga.store import SagaObject


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff-base for change-detection handlers, which this operator does not have.

    kopf builds the "essence" of every watched object on every event, whatever handlers exist:
    a deep copy of the whole body (status included), a read of its annotation and a diff. Only
    on.create/update/resume handlers and daemons read that diff; with ``on.event`` alone it is
    pure cost: py-spy put kopf at 20.7% of the operator's samples with it and 11.1% without
    (bench/README.md). Nothing to build, fetch or store.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def build_registry(
    orchestrator: Orchestrator,
    namespaced: bool = False,
    kubeconfig: str | None = None,
    request_timeout: float = 10.0,
    watch_idle: float = 90.0,
) -> kopf.OperatorRegistry:
    """A private registry (no global state), so tests can run several operators in one process.

    kopf logs in with ``kubeconfig`` by the store's rules (``login.connection_info``), so the
    watch and the status writes reach the same cluster. Its own calls get the operator's
    timeouts: ``request_timeout`` to connect (a list may take three times that), and a watch
    that delivered nothing for ``watch_idle`` seconds (bookmarks included) is opened again from
    its resourceVersion (kopf's defaults: 300 s per call, 70 s idle).
    """
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.standalone = True  # replicas need no leader: resourceVersion is the lock
        settings.posting.enabled = False  # we post our own Events, one per saga transition
        settings.persistence.diffbase_storage = NoDiffBase()  # nothing reads kopf's diffs
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 300 + watch_idle
        settings.watching.connect_timeout = request_timeout
        settings.watching.inactivity_timeout = watch_idle
        settings.networking.connect_timeout = request_timeout
        settings.networking.request_timeout = 3 * request_timeout
        # Watching named namespaces needs no cluster-scope scans of CRDs and namespaces, so the
        # namespaced RBAC can stay Role-only (the Helm chart relies on this).
        settings.scanning.disabled = namespaced
        # Only the sagas no shard watch covers (shard_watch.py): unlabelled or mislabelled.
        settings.watching.label_selectors[API_GROUP, PLURAL] = CATCHALL_SELECTOR

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await connection_info(kubeconfig)

    caught = orchestrator.metrics.watch_events.labels(watch="catchall").inc

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def on_event(event: kopf.RawEvent, **_: Any) -> None:
        raw = event["object"]
        saga = SagaObject(raw)
        caught()
        if event["type"] == "DELETED":
            orchestrator.vanished(saga)  # a label added moves it to a shard watch
        else:
            orchestrator.observe(saga)

    return registry
