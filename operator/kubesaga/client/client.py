"""``SagaClient``: the seed Manager's API (Start/Get/ListActive/Compensate) over Saga objects.

The client never talks to RabbitMQ or kopf: it writes Saga specs and reads their status; the
operator does the rest. Every method is async.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client

from kubesaga.client.saga import Saga
from kubesaga.models import API_GROUP, API_VERSION, PLURAL, JsonObject, SagaSpec, StepSpec
from kubesaga.store import SagaObject, SagaStore, make_api_client
from kubesaga.store.watching import watch_until

FINAL_PHASES = ("Completed", "Compensated", "Failed")


class SagaClient:
    """Start, inspect, compensate and wait for Sagas in one namespace (by default)."""

    def __init__(self, api: client.ApiClient, namespace: str = "default") -> None:
        self.api = api
        self.namespace = namespace
        self.store = SagaStore(api)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, namespace: str = "default") -> SagaClient:
        """A client from a kubeconfig (default: $KUBECONFIG) or the in-cluster configuration."""
        return cls(await make_api_client(kubeconfig), namespace)

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> SagaClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(
        self,
        name: str,
        steps: Iterable[StepSpec | Mapping[str, Any]],
        context: JsonObject | None = None,
        *,
        namespace: str | None = None,
        deadline_seconds: float | None = None,
        ttl_seconds_after_finished: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Saga:
        """Create a Saga; the operator runs it. Validates locally first, for clear errors."""
        spec = SagaSpec(
            steps=[s if isinstance(s, StepSpec) else StepSpec.model_validate(s) for s in steps],
            context=context or {},
            deadline_seconds=deadline_seconds,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
        )
        return await self.create(name, spec, namespace=namespace, labels=labels)

    async def create(
        self,
        name: str,
        spec: SagaSpec,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Saga:
        obj = await self.store.create(namespace or self.namespace, name, spec.to_wire(), labels)
        return Saga.of(obj)

    async def get(self, name: str, *, namespace: str | None = None) -> Saga:
        return Saga.of(await self.store.get(namespace or self.namespace, name))

    async def list_sagas(
        self, *, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[Saga]:
        objs = await self.store.list(None if all_namespaces else namespace or self.namespace)
        return [Saga.of(o) for o in objs]

    async def list_active(
        self, *, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[Saga]:
        """Sagas not in a final phase (a server-side field selector on status.phase)."""
        selector = ",".join(f"status.phase!={phase}" for phase in FINAL_PHASES)
        objs = await self.store.list(
            None if all_namespaces else namespace or self.namespace, field_selector=selector
        )
        return [Saga.of(o) for o in objs]

    async def compensate(self, name: str, *, namespace: str | None = None) -> Saga:
        """Ask the operator to undo the saga (also valid once Completed)."""
        obj = await self.store.merge_spec(namespace or self.namespace, name, {"compensate": True})
        return Saga.of(obj)

    async def delete(self, name: str, *, namespace: str | None = None) -> None:
        await self.store.delete(namespace or self.namespace, name)

    async def wait(
        self, name: str, timeout: float | None = None, *, namespace: str | None = None
    ) -> Saga:
        """Wait (by watching, not polling) until the saga reaches a final phase; return it.

        "Final" means for the latest spec: right after ``compensate()`` on a Completed saga this
        waits for the compensation, not for the completion already recorded.

        Raises TimeoutError when ``timeout`` seconds pass first.
        """
        async with asyncio.timeout(timeout):
            return await self._watch_until_final(name, namespace or self.namespace)

    async def _watch_until_final(self, name: str, namespace: str) -> Saga:
        current = await self.store.get(namespace, name)
        saga = Saga.of(current)
        if saga.is_settled():
            return saga

        def settled(kind: str, raw: Any) -> Saga | None:
            if kind == "DELETED":
                raise LookupError(f"saga {namespace}/{name} was deleted while waiting")
            if kind not in ("ADDED", "MODIFIED"):
                return None
            saga = Saga.of(SagaObject(raw))
            return saga if saga.is_settled() else None

        return await watch_until(
            client.CustomObjectsApi(self.api).list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            check=settled,
            field_selector=f"metadata.name={name}",
            resource_version=current.resource_version,
        )
