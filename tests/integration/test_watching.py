"""Watches that outlive the apiserver's watch cache (issue 10, defect 7).

A watch from a resourceVersion the apiserver no longer keeps gets 410 Gone: after a long wait, an
apiserver restart or a compaction. Every watch loop goes through ``kubesaga.store.watching``,
which lists again and carries on; here ``AsyncSagaClient.wait`` is handed a copy whose
resourceVersion is long gone.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kubesaga import AsyncSagaClient, Saga, SagaPhase
from kubesaga.settings import Settings
from tests.integration.harness import worker_task
from tests.integration.scripted import scripted_worker, step

WAIT_S = 60


async def test_wait_lists_again_when_its_resource_version_expired(
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read = saga_client._read
    handed_out = asyncio.Event()

    async def expired_copy(namespace: str, name: str, uid: str | None = None) -> Saga:
        saga = await read(namespace, name, uid)
        handed_out.set()
        return dataclasses.replace(saga, resource_version="1")

    monkeypatch.setattr(saga_client, "_read", expired_copy)
    worker, _ = scripted_worker(prefix)
    await saga_client.start("expired", [step(prefix, "create_order")])
    waiting = asyncio.create_task(saga_client.wait("expired", WAIT_S))
    async with asyncio.timeout(WAIT_S):
        await handed_out.wait()
    async with worker_task(worker, running_operator):  # no worker before: wait had to watch
        saga = await waiting
    assert saga.phase is SagaPhase.COMPLETED
