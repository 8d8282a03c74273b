"""What kubesaga relies on from the test platform, one behaviour per test.

Where something happens asynchronously (a CRD becoming Established, a status update), the test
awaits it through a watch that starts at a known resourceVersion, so no event can slip by and no
sleep stands in for it. Every wait is bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import aio_pika
import aiormq
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

pytestmark = pytest.mark.integration

WAIT_S = 30
GROUP = "platform.test.kubesaga.io"
VERSION = "v1"


def widget_crd(plural: str) -> dict[str, Any]:
    """A small namespaced CRD with a status subresource and one CEL validation rule."""
    kind = plural.capitalize()[:-1] if plural.endswith("s") else plural.capitalize()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "replicas": {"type": "integer"},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.replicas <= self.maxReplicas",
                                            "message": "replicas must not exceed maxReplicas",
                                        }
                                    ],
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "phase": {"type": "string"},
                                        "observedGeneration": {"type": "integer"},
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def _established(crd: client.V1CustomResourceDefinition) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


async def create_crd_and_await_established(
    api_client: client.ApiClient, body: dict[str, Any]
) -> client.V1CustomResourceDefinition:
    """Create the CRD, then list + watch it (from the list's resourceVersion) until Established."""
    ext = client.ApiextensionsV1Api(api_client)
    name = body["metadata"]["name"]
    # The generated client serializes a plain dict body as it is.
    await ext.create_custom_resource_definition(cast(client.V1CustomResourceDefinition, body))
    selector = f"metadata.name={name}"
    async with asyncio.timeout(WAIT_S):
        listed = await ext.list_custom_resource_definition(field_selector=selector)
        for item in listed.items:
            if _established(item):
                return item
        async with watch.Watch() as w:
            async for event in w.stream(
                ext.list_custom_resource_definition,
                field_selector=selector,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=WAIT_S,
            ):
                crd: client.V1CustomResourceDefinition = event["object"]
                if event["type"] in ("ADDED", "MODIFIED") and _established(crd):
                    return crd
    raise AssertionError(f"the watch on CRD {name} ended before it was Established")


async def await_watch_cache(api_client: client.ApiClient, plural: str) -> None:
    """Wait until the apiserver's watch cache for a new resource is initialized.

    Since Kubernetes 1.31 (GA and locked in 1.34, KEP-4568) an uninitialized watch cache answers
    watches and unpaginated lists with 429 "storage is (re)initializing" and a Retry-After header,
    for a short while after a CRD becomes Established. No event marks the moment it is ready, so
    this follows the server's Retry-After, exactly as client-go's reflector does; bounded in time.
    """
    custom = client.CustomObjectsApi(api_client)
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                await custom.list_cluster_custom_object(GROUP, VERSION, plural)
                return
            except ApiException as exc:
                if exc.status != 429:
                    raise
                retry_after = exc.headers.get("Retry-After", "1") if exc.headers else "1"
                await asyncio.sleep(float(retry_after))


async def delete_crd(api_client: client.ApiClient, name: str) -> None:
    try:
        await client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def widgets(api_client: client.ApiClient) -> AsyncIterator[str]:
    """An Established widget CRD for this module; yields its plural."""
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    body = widget_crd(plural)
    await create_crd_and_await_established(api_client, body)
    await await_watch_cache(api_client, plural)
    try:
        yield plural
    finally:
        await delete_crd(api_client, body["metadata"]["name"])


async def create_widget(
    api_client: client.ApiClient, namespace: str, plural: str, name: str = "w1"
) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api_client)
    obj: dict[str, Any] = await custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        plural,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": widget_crd(plural)["spec"]["names"]["kind"],
            "metadata": {"name": name},
            "spec": {"replicas": 1, "maxReplicas": 3},
        },
    )
    return obj


# ------------------------------------------------------------------------------- apiserver


async def test_apiserver_serves_a_crd_once_it_is_established(api_client: client.ApiClient) -> None:
    plural = f"gadgets{uuid.uuid4().hex[:6]}"
    body = widget_crd(plural)
    try:
        crd = await create_crd_and_await_established(api_client, body)
        assert crd.spec.versions[0].subresources.status is not None
        # A paginated list is answered from etcd while the new watch cache initializes.
        served = await client.CustomObjectsApi(api_client).list_cluster_custom_object(
            GROUP, VERSION, plural, limit=10
        )
        assert served["items"] == []
    finally:
        await delete_crd(api_client, body["metadata"]["name"])


async def test_cel_validation_rule_rejects_an_invalid_object(
    api_client: client.ApiClient, namespace: str, widgets: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as caught:
        await custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            widgets,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": widget_crd(widgets)["spec"]["names"]["kind"],
                "metadata": {"name": "too-many"},
                "spec": {"replicas": 5, "maxReplicas": 3},
            },
        )
    assert caught.value.status == 422
    assert "replicas must not exceed maxReplicas" in str(caught.value.body)


async def test_status_write_with_stale_resource_version_gets_409_conflict(
    api_client: client.ApiClient, namespace: str, widgets: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    created = await create_widget(api_client, namespace, widgets)
    stale = created["metadata"]["resourceVersion"]

    fresh = dict(created, status={"phase": "Running", "observedGeneration": 1})
    updated = await custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, widgets, "w1", fresh
    )
    assert updated["metadata"]["resourceVersion"] != stale

    late = dict(created, status={"phase": "Failed", "observedGeneration": 1})
    late["metadata"] = dict(created["metadata"], resourceVersion=stale)
    with pytest.raises(ApiException) as caught:
        await custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, namespace, widgets, "w1", late
        )
    assert caught.value.status == 409

    current = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, widgets, "w1")
    assert current["status"]["phase"] == "Running"


async def test_watch_observes_a_status_update(
    api_client: client.ApiClient, namespace: str, widgets: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    created = await create_widget(api_client, namespace, widgets)
    since = created["metadata"]["resourceVersion"]

    async def first_status_update() -> dict[str, Any]:
        # Starts at the creation's resourceVersion: the update is delivered even if it is
        # written before this stream connects.
        async with watch.Watch() as w:
            async for event in w.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                widgets,
                resource_version=since,
                timeout_seconds=WAIT_S,
            ):
                obj: dict[str, Any] = event["object"]
                if event["type"] == "MODIFIED" and obj.get("status", {}).get("phase"):
                    return obj
        raise AssertionError("the watch ended without a status update")

    async with asyncio.timeout(WAIT_S):
        observed = asyncio.create_task(first_status_update())
        await custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            widgets,
            "w1",
            [{"op": "add", "path": "/status", "value": {"phase": "Compensating"}}],
        )
        obj = await observed

    assert obj["metadata"]["name"] == "w1"
    assert obj["status"]["phase"] == "Compensating"
    assert int(obj["metadata"]["resourceVersion"]) > int(since)


# ---------------------------------------------------------------------------------- broker


async def test_confirmed_message_is_consumed_and_acked(
    amqp_connection: AbstractRobustConnection,
) -> None:
    queue_name = f"platform-test-{uuid.uuid4().hex[:8]}"
    body = b'{"saga": "s1", "step": "reserve"}'

    publisher = await amqp_connection.channel(publisher_confirms=True)
    queue = await publisher.declare_queue(queue_name, durable=True)
    try:
        confirmation = await publisher.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue_name,
            mandatory=True,
        )
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)

        consumer = await amqp_connection.channel()
        await consumer.set_qos(prefetch_count=1)
        consumer_queue = await consumer.get_queue(queue_name)
        async with asyncio.timeout(WAIT_S), consumer_queue.iterator() as messages:
            async for message in messages:
                assert message.body == body
                assert not message.redelivered
                await message.ack()
                break
        # Closing the channel would put an unacknowledged message back in the queue.
        await consumer.close()

        reopened = await publisher.declare_queue(queue_name, passive=True)
        assert reopened.declaration_result.message_count == 0
        assert await reopened.get(fail=False) is None
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await publisher.close()
