"""Preparing the cluster for the demo: the Saga CRD (server-side apply) and the namespace."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.demo.examples import DemoError
from kubesaga.schema import CRD_NAME, saga_crd
from kubesaga.store.watching import CrdNotAccepted, wait_crd_established

FIELD_MANAGER = "kubesaga-demo"
ESTABLISH_TIMEOUT_S = 60


async def apply_crd(api_client: client.ApiClient) -> None:
    """Server-side apply of the CRD generated from the models, then wait until Established."""
    api = client.ApiextensionsV1Api(api_client)
    body: Any = saga_crd()
    patch: Any = api.patch_custom_resource_definition  # _content_type is missing from the stubs
    try:
        applied = await patch(
            CRD_NAME,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except ApiException as error:
        raise DemoError(f"installing the Saga CRD failed: {_describe(error)}") from error
    await _wait_established(api, applied.metadata.generation)


async def _wait_established(api: client.ApiextensionsV1Api, generation: int) -> None:
    """Watch the CRD until the apiserver serves the generation that was written."""
    try:
        async with asyncio.timeout(ESTABLISH_TIMEOUT_S):
            await wait_crd_established(api, CRD_NAME, generation)
    except CrdNotAccepted as error:
        raise DemoError(str(error)) from None
    except TimeoutError:
        raise DemoError(f"the Saga CRD was not Established within {ESTABLISH_TIMEOUT_S}s") from None


async def ensure_namespace(api_client: client.ApiClient, namespace: str) -> None:
    """Create the namespace unless it exists; refuse one that is being deleted."""
    core = client.CoreV1Api(api_client)
    try:
        await core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=namespace, labels={"app.kubernetes.io/part-of": "kubesaga-demo"}
                )
            )
        )
        return
    except ApiException as error:
        if error.status != 409:
            raise DemoError(f"creating namespace {namespace} failed: {_describe(error)}") from error
    existing = await core.read_namespace(namespace)
    if existing.status is not None and existing.status.phase == "Terminating":
        raise DemoError(
            f"namespace {namespace} is being deleted (the local platform has no controller to "
            "finish that); pick another with --namespace"
        )


async def retry_while_crd_settles(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Right after a CRD is Established the apiserver can still answer 404 or 429 ("storage is
    (re)initializing") for its resources for a moment; there is no event to wait for."""
    for delay in (0.2, 0.5, 1.0, 2.0, 4.0):
        try:
            return await call(*args, **kwargs)
        except ApiException as error:
            if error.status not in (404, 429):
                raise
            await asyncio.sleep(delay)
    return await call(*args, **kwargs)


def _describe(error: ApiException) -> str:
    body = error.body.decode() if isinstance(error.body, bytes) else error.body
    return f"{error.status} {error.reason}: {body}"
