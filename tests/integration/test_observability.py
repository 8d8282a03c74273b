"""What operators of kubesaga see: Events on the Saga, /metrics, /livez and /readyz, TTL cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from kubesaga import AsyncSagaClient, SagaNotFound
from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.settings import Settings
from kubesaga.store.watching import watch_until
from tests.integration.harness import free_port, operator_task, worker_task
from tests.integration.scripted import scripted_worker, step

WAIT_S = 60


PEOPLE_REASONS = {"Started", "StepFailed", "Compensating", "StepCompensated", "Compensated"}
"""What the default (``KUBESAGA_EVENTS=phases``) posts for a saga whose second step fails."""


@pytest.mark.parametrize(
    ("mode", "also"), [(None, set()), ("all", {"StepSucceeded"})], ids=["default", "all"]
)
async def test_transitions_are_posted_as_kubernetes_events(
    operator_settings: Settings,
    saga_crd: object,
    saga_client: AsyncSagaClient,
    prefix: str,
    api_client: client.ApiClient,
    namespace: str,
    mode: str | None,
    also: set[str],
) -> None:
    settings = operator_settings
    if mode is not None:
        settings = settings.model_copy(update={"events": mode})
    worker, _ = scripted_worker(prefix)
    async with operator_task(settings), worker_task(worker, settings):
        await saga_client.start("seen", [step(prefix, "a"), step(prefix, "b", fail="permanent")])
        await saga_client.wait("seen", WAIT_S)
    wanted = PEOPLE_REASONS | also
    seen: dict[str, str] = {}

    def all_seen(kind: str, obj: Any) -> bool | None:
        if kind != "DELETED":
            seen[obj.reason] = obj.type
        return True if wanted <= seen.keys() else None

    async with asyncio.timeout(WAIT_S):
        await watch_until(
            client.CoreV1Api(api_client).list_namespaced_event,
            namespace,
            check=all_seen,
            field_selector="involvedObject.name=seen",
        )
    # One task posts them in transition order: a StepSucceeded of step a would be there by now.
    assert seen.keys() == wanted, seen
    assert seen["StepFailed"] == "Warning"
    if also:
        assert seen["StepSucceeded"] == "Normal"


async def test_metrics_and_health_endpoints(
    operator_settings: Settings,
    saga_crd: object,
    saga_client: AsyncSagaClient,
    prefix: str,
) -> None:
    port = free_port()
    settings = operator_settings.model_copy(
        update={"metrics_port": port, "metrics_host": "127.0.0.1"}
    )
    worker, _ = scripted_worker(prefix)
    async with operator_task(settings), worker_task(worker, settings):
        await saga_client.start("counted", [step(prefix, "a"), step(prefix, "b")])
        await saga_client.wait("counted", WAIT_S)
        async with aiohttp.ClientSession() as http:
            for probe in ("livez", "readyz"):
                async with http.get(f"http://127.0.0.1:{port}/{probe}") as response:
                    assert response.status == 200, await response.text()
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
    assert 'kubesaga_sagas{phase="Completed"} 1.0' in text
    assert "kubesaga_status_writes_total 3.0" in text
    assert 'kubesaga_results_total{verdict="applied"} 2.0' in text
    assert 'kubesaga_commands_published_total{kind="execute"} 2.0' in text
    assert 'kubesaga_step_duration_seconds_count{action="' + prefix + '.do"} 2.0' in text
    assert "kubesaga_status_conflicts_total" in text


async def test_finished_saga_is_deleted_after_its_ttl(
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    prefix: str,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    worker, _ = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        created = await saga_client.start(
            "short-lived", [step(prefix, "a")], ttl_seconds_after_finished=1
        )
        done = await saga_client.wait("short-lived", WAIT_S)
    assert done.is_completed()
    try:
        current = await saga_client.get("short-lived")
    except SagaNotFound:
        return  # already deleted

    def deleted(kind: str, obj: Any) -> bool | None:
        return True if kind == "DELETED" and obj["metadata"]["uid"] == created.uid else None

    async with asyncio.timeout(WAIT_S):
        await watch_until(
            client.CustomObjectsApi(api_client).list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            check=deleted,
            field_selector="metadata.name=short-lived",
            resource_version=current.saga.resource_version,
        )
