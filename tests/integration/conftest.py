"""The Saga CRD, installed once per session on the platform's apiserver.

Applying is idempotent (create, or replace when it exists), so sessions can share one apiserver.
The CRD is left installed at the end: deleting it would delete the Sagas of any other session
using the same platform, and the platform itself is torn down by whoever started it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from playwright.async_api import Browser

from kubesaga.broker import Broker, BrokerSettings
from kubesaga.broker.topology import DEAD_LETTER_QUEUE
from kubesaga.client import AsyncSagaClient
from kubesaga.schema import CRD_NAME, saga_crd
from kubesaga.settings import Settings
from kubesaga.store.watching import wait_crd_established
from tests.faults.platform import amqp_address, apiserver_address
from tests.faults.proxy import TcpProxy, running_proxy
from tests.integration.browser import chromium, ui_server
from tests.integration.examples_kit import ExampleRun
from tests.integration.harness import operator_task, unique

ESTABLISH_TIMEOUT_S = 60


@pytest_asyncio.fixture(scope="session", loop_scope="session", name="saga_crd")
async def saga_crd_fixture(api_client: client.ApiClient) -> dict[str, Any]:
    """The generated CRD, applied and Established; returns the CRD dict that was applied."""
    crd = saga_crd()
    api = client.ApiextensionsV1Api(api_client)
    body: Any = crd  # the client takes a plain dict as well as a V1CustomResourceDefinition
    try:
        applied = await api.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        existing = await api.read_custom_resource_definition(CRD_NAME)
        body = {
            **crd,
            "metadata": {**crd["metadata"], "resourceVersion": existing.metadata.resource_version},
        }
        applied = await api.replace_custom_resource_definition(CRD_NAME, body)
    async with asyncio.timeout(ESTABLISH_TIMEOUT_S):
        await wait_crd_established(api, CRD_NAME, applied.metadata.generation)
    return crd


# ------------------------------------------------------------------ operator and workers


@pytest.fixture
def prefix() -> str:
    """A unique action prefix: every test gets queues of its own."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def operator_settings(kubeconfig: str, amqp_url: str, namespace: str, prefix: str) -> Settings:
    """Operator settings scoped to the test's namespace and queues."""
    return Settings(
        kubeconfig=kubeconfig,
        amqp_url=amqp_url,
        namespaces=[namespace],
        results_queue=f"{prefix}.results",
        dead_letter_queue=f"{prefix}.dead-letter",
        metrics_port=0,
        pod_namespace=namespace,  # the shard Leases: the test's own
    )


@pytest_asyncio.fixture(loop_scope="session")
async def saga_client(api_client: client.ApiClient, namespace: str) -> AsyncSagaClient:
    """A client on the test's namespace (sharing the session's API connection)."""
    return AsyncSagaClient(api_client, namespace)


@pytest_asyncio.fixture(loop_scope="session")
async def running_operator(
    operator_settings: Settings, saga_crd: dict[str, Any]
) -> AsyncIterator[Settings]:
    """An operator task watching the test's namespace."""
    async with operator_task(operator_settings):
        yield operator_settings


@pytest_asyncio.fixture(loop_scope="session")
async def run_example(
    operator_settings: Settings, saga_crd: dict[str, Any], saga_client: AsyncSagaClient
) -> AsyncIterator[ExampleRun]:
    """Runs an example of examples/ with an operator of the test's own.

    The examples' action names are fixed, and RabbitMQ declares each action queue with the
    dead-letter queue's name as an argument: this keeps the default dead-letter queue (as the
    demo does) so that both can declare the same action queues on one broker.
    """
    settings = operator_settings.model_copy(update={"dead_letter_queue": DEAD_LETTER_QUEUE})
    async with operator_task(settings):
        yield ExampleRun(saga_client, settings)


# ------------------------------------------------------------------ broker-level tests


@pytest.fixture
def settings(amqp_url: str) -> BrokerSettings:
    """Broker settings with results and dead-letter queues of the test's own."""
    return BrokerSettings(
        url=amqp_url,
        results_queue=unique("test.results"),
        dead_letter_queue=unique("test.dead-letter"),
        requeue_delay=0.01,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def channel(amqp_connection: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    """A plain channel of the test's own, to look at queues from the outside."""
    ch = await amqp_connection.channel()
    try:
        yield ch
    finally:
        await ch.close()


@pytest_asyncio.fixture(loop_scope="session")
async def broker(
    settings: BrokerSettings, amqp_connection: AbstractRobustConnection
) -> AsyncIterator[Broker]:
    """A connected Broker (the operator's side); deletes the test's queues afterwards."""
    b = await Broker.connect(settings)
    try:
        yield b
    finally:
        await b.close()
        cleanup = await amqp_connection.channel()
        for name in (settings.results_queue, settings.dead_letter_queue):
            await cleanup.queue_delete(name)
        await cleanup.close()


# ------------------------------------------------------------------ network faults


@pytest_asyncio.fixture(loop_scope="session")
async def api_proxy(kubeconfig: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the platform's apiserver (see tests/faults/proxy.py)."""
    async with running_proxy(*apiserver_address(kubeconfig)) as proxy:
        yield proxy


@pytest_asyncio.fixture(loop_scope="session")
async def broker_proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the platform's broker (see tests/faults/proxy.py)."""
    async with running_proxy(*amqp_address(amqp_url)) as proxy:
        yield proxy


# ------------------------------------------------------------------ the UI in a browser


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session's UI tests; each test opens its own contexts."""
    async with chromium() as b:
        yield b


@pytest_asyncio.fixture(loop_scope="session")
async def ui(api_client: client.ApiClient, namespace: str) -> AsyncIterator[str]:
    """``kubesaga ui`` for the test's namespace, with actions on; yields its base URL."""
    async with ui_server(api_client, namespace) as url:
        yield url
