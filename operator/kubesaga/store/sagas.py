"""Reading and writing Saga objects. The status subresource is the saga's atomic store.

Every status write is a replace that carries ``metadata.resourceVersion``: the apiserver refuses
it with 409 Conflict when someone else wrote first, and the caller re-reads and re-decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.models import API_GROUP, API_VERSION, KIND, PLURAL
from kubesaga.models.shard_key import saga_manifest

APIVERSION = f"{API_GROUP}/{API_VERSION}"


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): re-read and re-decide."""


class NotFound(Exception):
    """The Saga does not exist (any more)."""


@dataclass(frozen=True)
class SagaObject:
    """A Saga as the apiserver returned it (a raw dict), with typed accessors."""

    raw: Mapping[str, Any]

    @property
    def metadata(self) -> Mapping[str, Any]:
        return cast(Mapping[str, Any], self.raw.get("metadata") or {})

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))

    @property
    def resource_version(self) -> str:
        return str(self.metadata.get("resourceVersion", ""))

    @property
    def generation(self) -> int:
        return int(self.metadata.get("generation") or 1)

    @property
    def deleting(self) -> bool:
        return bool(self.metadata.get("deletionTimestamp"))

    @property
    def spec(self) -> Any:
        return self.raw.get("spec")

    @property
    def status(self) -> Any:
        return self.raw.get("status")

    def newer_than(self, other: SagaObject) -> bool:
        """Whether this copy is newer; resourceVersions are etcd revisions in practice."""
        mine, theirs = self.resource_version, other.resource_version
        if mine.isdigit() and theirs.isdigit():
            return int(mine) > int(theirs)
        return mine != theirs


def _wrap(error: ApiException) -> Exception:
    if error.status == 409:
        return Conflict(str(error.reason))
    if error.status == 404:
        return NotFound(str(error.reason))
    return error


class SagaStore:
    """Thin typed wrapper over the custom objects API for Sagas."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = client.CustomObjectsApi(api)

    async def get(self, namespace: str, name: str) -> SagaObject:
        try:
            raw = await self.api.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            raise _wrap(error) from error
        return SagaObject(raw)

    async def replace_status(self, saga: SagaObject, status: Mapping[str, Any]) -> SagaObject:
        """Write ``status`` if ``saga`` is still the current version; raise Conflict otherwise."""
        body = {
            "apiVersion": APIVERSION,
            "kind": KIND,
            "metadata": {
                "name": saga.name,
                "namespace": saga.namespace,
                "resourceVersion": saga.resource_version,
            },
            "status": dict(status),
        }
        try:
            raw = await self.api.replace_namespaced_custom_object_status(
                API_GROUP, API_VERSION, saga.namespace, PLURAL, saga.name, body
            )
        except ApiException as error:
            raise _wrap(error) from error
        return SagaObject(raw)

    async def create(
        self,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
    ) -> SagaObject:
        body = saga_manifest(namespace, name, spec, labels)
        try:
            raw = await self.api.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, body
            )
        except ApiException as error:
            raise _wrap(error) from error
        return SagaObject(raw)

    async def merge_spec(self, namespace: str, name: str, patch: Mapping[str, Any]) -> SagaObject:
        return await self.merge_patch(namespace, name, {"spec": dict(patch)})

    async def merge_labels(
        self, namespace: str, name: str, labels: Mapping[str, str], uid: str | None = None
    ) -> SagaObject:
        """Set ``labels`` (a metadata merge patch); with ``uid``, only on that incarnation."""
        metadata: dict[str, Any] = {"labels": dict(labels)}
        if uid:
            metadata["uid"] = uid  # a precondition: 409 for a newer saga of the same name
        return await self.merge_patch(namespace, name, {"metadata": metadata})

    async def merge_patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> SagaObject:
        """A JSON merge patch of the saga (``metadata.uid`` in it is a precondition). Raises
        NotFound or Conflict, else the ApiException, each with the apiserver's as cause."""
        try:
            api: Any = self.api  # _content_type is accepted at run time, not in the stubs
            raw = await api.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                dict(body),
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            raise _wrap(error) from error
        return SagaObject(raw)

    async def delete(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete; with ``uid``, only that incarnation (a newer Saga of the same name survives)."""
        body = client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            await self.api.delete_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, body=body
            )
        except ApiException as error:
            raise _wrap(error) from error

    async def list(
        self, namespace: str | None = None, field_selector: str = "", label_selector: str = ""
    ) -> list[SagaObject]:
        """The Sagas in ``namespace`` (every namespace without one) the selectors pick.

        Raises ``NotFound`` (404), ``Conflict`` (409) or the ``ApiException`` itself, each with
        the apiserver's ``ApiException`` as ``__cause__``: the client translates that into its
        own errors (``client.api_errors.translate``), with the apiserver's message."""
        try:
            if namespace:
                raw = await self.api.list_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    field_selector=field_selector,
                    label_selector=label_selector,
                )
            else:
                raw = await self.api.list_cluster_custom_object(
                    API_GROUP,
                    API_VERSION,
                    PLURAL,
                    field_selector=field_selector,
                    label_selector=label_selector,
                )
        except ApiException as error:
            raise _wrap(error) from error
        return [SagaObject(item) for item in raw.get("items", [])]
