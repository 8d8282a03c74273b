"""Results that must not be applied, and what refusing them may reveal (issue 10, defects 2, 4).

A dispatch id's random part is the only proof that a result comes from the handler that received
the command. Refusing a guessed id must not tell the guesser the right one: not in the dead
letter, its headers, the operator's log, an Event or a metric. And an operator limited to
namespaces must refuse results naming a saga in any other namespace, even one its credentials
could reach.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
from kubernetes_asyncio import client as k8s

from kubesaga import AsyncSagaClient
from kubesaga.broker.topology import HEADER_REASON
from kubesaga.models import API_GROUP, API_VERSION, PLURAL, SagaStatus
from kubesaga.settings import Settings
from tests.integration.harness import free_port, next_dead_letter, operator_task
from tests.integration.scripted import step
from tests.integration.test_faults import dispatched, scrape, watch_status

pytestmark = pytest.mark.usefixtures("saga_crd")


def result_body(
    dispatch_id: str, namespace: str, name: str, uid: str, step_name: str = "create_order"
) -> bytes:
    return json.dumps(
        {
            "version": 1,
            "dispatchId": dispatch_id,
            "saga": {"namespace": namespace, "name": name, "uid": uid},
            "step": step_name,
            "kind": "execute",
            "attempt": 1,
            "status": "succeeded",
            "output": {},
        }
    ).encode()


async def publish(amqp_url: str, queue: str, body: bytes) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(body, content_type="application/json"), routing_key=queue
        )


async def test_refusing_a_guessed_dispatch_id_reveals_the_valid_one_nowhere(
    operator_settings: Settings,
    saga_client: AsyncSagaClient,
    api_client: k8s.ApiClient,
    amqp_url: str,
    namespace: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    settings = operator_settings.model_copy(
        update={"metrics_port": port, "metrics_host": "127.0.0.1"}
    )
    async with operator_task(settings):  # no worker: the step stays in flight
        saga = await saga_client.start("guess-1", [step(prefix, "create_order")])
        status = await watch_status(saga_client, "guess-1", dispatched("create_order"))
        valid = status.step("create_order").dispatch_id
        assert valid is not None
        guessed = valid.rsplit("/", 1)[0] + "/000000000000"
        body = result_body(guessed, namespace, "guess-1", saga.uid)
        await publish(amqp_url, settings.results_queue, body)
        dead = await next_dead_letter(amqp_url, settings.dead_letter_queue)
        metrics = await scrape(port)
    events = await k8s.CoreV1Api(api_client).list_namespaced_event(namespace)
    assert dead.body == body
    reason = str((dead.headers or {}).get(HEADER_REASON))
    assert "stale or unknown dispatch id" in reason
    places = {
        "dead-letter headers": repr(dead.headers),
        "dead-letter properties": repr(dead.info()),
        "kubesaga's log": "\n".join(
            f"{r.getMessage()} {r.__dict__}"
            for r in caplog.records
            if r.name.startswith("kubesaga")
        ),
        "events": " ".join(f"{e.reason} {e.message}" for e in events.items),
        "metrics": repr(metrics),
    }
    assert [where for where, text in places.items() if valid in text] == []


@pytest_asyncio.fixture(loop_scope="session")
async def other_namespace(api_client: k8s.ApiClient, namespace: str) -> AsyncIterator[str]:
    """A second namespace, not watched by the test's operator."""
    core = k8s.CoreV1Api(api_client)
    name = f"{namespace[:50]}-other"
    await core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await core.delete_namespace(name)


async def test_result_naming_an_unwatched_namespace_is_dead_lettered_and_changes_nothing(
    operator_settings: Settings,
    api_client: k8s.ApiClient,
    amqp_url: str,
    other_namespace: str,
    prefix: str,
) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    body: dict[str, Any] = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Saga",
        "metadata": {"name": "elsewhere"},
        "spec": {"steps": [step(prefix, "create_order")]},
    }
    created = await custom.create_namespaced_custom_object(
        API_GROUP, API_VERSION, other_namespace, PLURAL, body
    )
    uid = created["metadata"]["uid"]
    async with operator_task(operator_settings):
        result = result_body(f"{uid}/create_order/execute/1/x", other_namespace, "elsewhere", uid)
        await publish(amqp_url, operator_settings.results_queue, result)
        dead = await next_dead_letter(amqp_url, operator_settings.dead_letter_queue)
    after = await custom.get_namespaced_custom_object(
        API_GROUP, API_VERSION, other_namespace, PLURAL, "elsewhere"
    )
    assert dead.body == result
    reason = str((dead.headers or {}).get(HEADER_REASON))
    assert f"namespace {other_namespace!r} is not watched" in reason
    assert "status" not in after, "the operator wrote a saga it does not watch"
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_commands_dispatched_together_do_not_share_their_secret(
    operator_settings: Settings, saga_client: AsyncSagaClient, prefix: str
) -> None:
    """Parallel steps are dispatched by one decision; the handler of one must not learn from its
    command the dispatch id of the other."""

    def both_dispatched(status: SagaStatus) -> bool:
        return dispatched("a")(status) and dispatched("b")(status)

    async with operator_task(operator_settings):  # no worker: both stay in flight
        await saga_client.start(
            "siblings", [step(prefix, "a", dependsOn=[]), step(prefix, "b", dependsOn=[])]
        )
        status = await watch_status(saga_client, "siblings", both_dispatched)
    ids = [status.step(name).dispatch_id or "" for name in ("a", "b")]
    assert ids[0].rsplit("/", 1)[1] != ids[1].rsplit("/", 1)[1]
