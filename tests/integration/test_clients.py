"""Both clients, one suite: every scenario runs against ``SagaClient`` (blocking, in a thread)
and ``AsyncSagaClient`` on the real platform (kube-apiserver + etcd with the Saga CRD, RabbitMQ,
the operator and a scripted worker where the saga has to run).

What each would catch is in its docstring; the shared rules (error mapping, spec comparison,
when a wait is over) are also pinned without a cluster in ``tests/unit/test_client_rules.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client as k8s

from kubesaga import (
    AsyncSagaClient,
    Saga,
    SagaAlreadyExists,
    SagaApiError,
    SagaClient,
    SagaInvalid,
    SagaNotFound,
    SagaNotRedrivable,
    SagaPhase,
    SagaTimeout,
    StepPhase,
)
from kubesaga.settings import Settings
from tests.integration.clients import AsyncAdapter, Client, SyncAdapter
from tests.integration.gateway import gateway_worker, refund_saga
from tests.integration.harness import operator_task, worker_task
from tests.integration.scripted import scripted_worker, step

WAIT_S = 60

pytestmark = pytest.mark.usefixtures("saga_crd")


@pytest_asyncio.fixture(loop_scope="session", params=["sync", "async"])
async def sagas(
    request: pytest.FixtureRequest, kubeconfig: str, api_client: k8s.ApiClient, namespace: str
) -> AsyncIterator[Client]:
    """The client under test, on the test's namespace: ``sync`` connects its own
    ``SagaClient`` from the kubeconfig (as an application would), ``async`` shares the session's
    connection."""
    if request.param == "async":
        yield AsyncAdapter(AsyncSagaClient(api_client, namespace))
        return
    blocking = await asyncio.to_thread(SagaClient.connect, kubeconfig, namespace)
    try:
        yield SyncAdapter(blocking)
    finally:
        blocking.close()


def two_steps(prefix: str) -> list[dict[str, Any]]:
    return [step(prefix, "create_order"), step(prefix, "charge_payment")]


async def test_start_returns_a_handle_whose_wait_sees_it_complete(
    running_operator: Settings, sagas: Client, prefix: str
) -> None:
    """start → handle.wait: catches a handle that does not follow its saga, a wait that returns
    before the operator finished, and .status/.steps not read from the final snapshot."""
    worker, ledger = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        handle = await sagas.start("order-1", two_steps(prefix), context={"customer": "c-1"})
        assert handle.status.phase is SagaPhase.PENDING  # the snapshot create returned
        assert [s.name for s in handle.steps] == ["create_order", "charge_payment"]
        final = await handle.wait(WAIT_S)
    assert final.phase is SagaPhase.COMPLETED and final.is_settled()
    status = handle.status  # the handle keeps what wait returned
    assert status.phase is SagaPhase.COMPLETED and status.progress == "2/2"
    assert [s.phase for s in handle.steps] == [StepPhase.SUCCEEDED, StepPhase.SUCCEEDED]
    assert ledger.steps("do", "order-1") == ["create_order", "charge_payment"]
    refreshed = await handle.refresh()
    assert refreshed.uid == handle.uid and refreshed.phase is SagaPhase.COMPLETED


async def test_start_is_idempotent_for_the_same_spec_and_refuses_a_different_one(
    sagas: Client, prefix: str
) -> None:
    """A retried start must return the existing saga (not fail, not start a second); the same
    name with another spec must fail clearly, naming what differs."""
    first = await sagas.start("order-2", two_steps(prefix), context={"customer": "c-2"})
    again = await sagas.start("order-2", two_steps(prefix), context={"customer": "c-2"})
    assert again.uid == first.uid
    assert first.created and not again.created  # `kubesaga start -f` prints which
    with pytest.raises(SagaAlreadyExists, match=r"differs in: context\)") as caught:
        await sagas.start("order-2", two_steps(prefix), context={"customer": "c-3"})
    assert caught.value.existing.uid == first.uid
    with pytest.raises(SagaAlreadyExists, match=r"differs in: steps\)"):
        await sagas.start("order-2", [step(prefix, "create_order")], context={"customer": "c-2"})


async def test_a_missing_saga_is_saga_not_found_everywhere(sagas: Client) -> None:
    """get, wait, compensate and delete of a saga that does not exist raise SagaNotFound (a
    LookupError), not a transport's ApiException."""
    with pytest.raises(SagaNotFound, match=r"saga .*/no-such-saga not found"):
        await sagas.get("no-such-saga")
    with pytest.raises(SagaNotFound):
        await sagas.wait("no-such-saga", 5)
    with pytest.raises(SagaNotFound):
        await sagas.compensate("no-such-saga")
    with pytest.raises(LookupError):
        await sagas.delete("no-such-saga")


async def test_an_invalid_spec_is_saga_invalid_with_the_apiservers_cel_message(
    sagas: Client, prefix: str
) -> None:
    """Unknown dependencies pass local validation and are refused by the CRD's CEL rule: the
    caller must get SagaInvalid carrying the apiserver's own message, and nothing created."""
    steps = [step(prefix, "a"), step(prefix, "b", dependsOn=["nowhere"])]
    with pytest.raises(SagaInvalid) as caught:
        await sagas.start("bad-deps", steps)
    assert 'step "b" depends on "nowhere", which is not a step of this saga' in str(caught.value)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(SagaNotFound):
        await sagas.get("bad-deps")


async def test_wait_gives_up_with_saga_timeout_after_its_timeout(
    sagas: Client, prefix: str
) -> None:
    """No operator runs, so the saga stays Pending: wait must end by its timeout (not hang, not
    return early) with SagaTimeout saying where the saga stood."""
    handle = await sagas.start("stuck", [step(prefix, "a")])
    started = time.monotonic()
    with pytest.raises(SagaTimeout) as caught:
        await handle.wait(1.5)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 5, elapsed
    assert "did not settle within 1.5 s" in str(caught.value)
    assert caught.value.last is not None and caught.value.last.phase is SagaPhase.PENDING
    with pytest.raises(TimeoutError):  # the client's own wait, too
        await sagas.wait("stuck", 0.5)


async def test_compensate_undoes_a_completed_saga_and_wait_waits_for_that(
    operator_settings: Settings, sagas: Client, prefix: str
) -> None:
    """handle.compensate on a Completed saga: wait must wait for the compensation, not return
    the completion already recorded. The request is made while no operator runs, so a wait
    that took the old Completed for an answer would return at once instead of timing out."""
    worker, ledger = scripted_worker(prefix)
    async with operator_task(operator_settings), worker_task(worker, operator_settings):
        handle = await sagas.start("undo-me", two_steps(prefix))
        assert (await handle.wait(WAIT_S)).phase is SagaPhase.COMPLETED
    requested = await handle.compensate()
    assert requested.spec.compensate and requested.phase is SagaPhase.COMPLETED
    with pytest.raises(SagaTimeout):
        await handle.wait(1)
    async with operator_task(operator_settings), worker_task(worker, operator_settings):
        final = await handle.wait(WAIT_S)
    assert final.phase is SagaPhase.COMPENSATED
    assert ledger.steps("undo", "undo-me") == ["charge_payment", "create_order"]
    assert [s.phase for s in handle.steps] == [StepPhase.COMPENSATED, StepPhase.COMPENSATED]


async def test_delete_removes_the_saga_and_ends_a_watch_on_it(sagas: Client, prefix: str) -> None:
    """A watch in progress must end with SagaNotFound when its saga is deleted (not hang until
    its timeout); a handle must not follow a new saga created under the same name."""
    handle = await sagas.start("short", [step(prefix, "a")])
    updates = sagas.watch("short", WAIT_S)
    assert (await anext(updates)).uid == handle.uid  # read; it watches from that version on
    await sagas.delete("short")
    with pytest.raises(SagaNotFound, match="was deleted while waiting"):
        await anext(updates)
    with pytest.raises(SagaNotFound, match="not found"):
        await handle.wait(WAIT_S)
    await sagas.start("short", [step(prefix, "a")])
    with pytest.raises(SagaNotFound, match="deleted and created again"):
        await handle.refresh()
    with pytest.raises(SagaNotFound, match="deleted and created again"):
        await handle.compensate()  # never the newcomer's compensation
    assert not (await sagas.get("short")).spec.compensate


async def test_list_active_lists_only_sagas_not_in_a_final_phase(
    running_operator: Settings, sagas: Client, prefix: str
) -> None:
    """The server-side selector on status.phase: a finished saga must not be listed, one that
    is not finished (Pending or Running: no worker serves its action) must be."""
    worker, _ = scripted_worker(prefix)
    async with worker_task(worker, running_operator):
        done = await sagas.start("done", [step(prefix, "a")])
        await done.wait(WAIT_S)
    unserved = [{"name": "a", "action": f"{prefix}-nobody.do"}]  # no worker: never finishes
    running = await sagas.start("running", unserved)
    active = await sagas.list_active()
    assert sorted(h.name for h in active) == ["running"]
    assert active[0].uid == running.uid


async def test_watch_yields_each_phase_change_and_ends_when_settled(
    running_operator: Settings, sagas: Client, prefix: str
) -> None:
    """watch must yield the saga as it is, then each phase change (no duplicates), and end by
    itself after the settled snapshot."""
    worker, _ = scripted_worker(prefix)
    await sagas.start("watched", two_steps(prefix))
    seen = []
    async with asyncio.timeout(WAIT_S):
        updates = sagas.watch("watched", WAIT_S)
        seen.append(await anext(updates))  # before any worker: not final yet
        assert not seen[0].phase.is_final
        async with worker_task(worker, running_operator):
            seen += [saga async for saga in updates]
    phases = [s.phase for s in seen]
    assert phases[-1] is SagaPhase.COMPLETED and seen[-1].is_settled()
    assert SagaPhase.RUNNING in phases
    shapes = [(s.phase, tuple(x.phase for x in (s.status.steps if s.status else []))) for s in seen]
    assert all(a != b for a, b in itertools.pairwise(shapes)), shapes


async def test_a_list_the_apiserver_refuses_is_a_saga_api_error_for_the_namespace(
    sagas: Client, namespace: str
) -> None:
    """A label selector the apiserver cannot parse: ``SagaApiError`` with its status and
    message, naming the namespace listed; catches a transport or store exception leaking out of
    ``list_sagas`` (the async client lists through ``SagaStore.list``)."""
    with pytest.raises(SagaApiError, match=f"on sagas in {namespace}: 400 BadRequest") as caught:
        await sagas.list_sagas("team in (")
    assert (caught.value.status, caught.value.namespace) == (400, namespace)


async def test_wait_lists_again_when_its_resource_version_expired(
    running_operator: Settings, sagas: Client, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch from a resourceVersion the apiserver no longer keeps gets 410 Gone (after a long
    wait, an apiserver restart, a compaction): both watch loops must list again and carry on.
    Here the wait's first read is handed a copy whose resourceVersion is long gone."""
    handed_out = threading.Event()
    read = sagas.client._read

    def expired_copy(namespace: str, name: str, uid: str | None = None) -> Saga:
        saga: Saga = read(namespace, name, uid)
        handed_out.set()
        return dataclasses.replace(saga, resource_version="1")

    async def expired_copy_async(namespace: str, name: str, uid: str | None = None) -> Saga:
        saga: Saga = await read(namespace, name, uid)
        handed_out.set()
        return dataclasses.replace(saga, resource_version="1")

    sync = sagas.flavour == "sync"
    monkeypatch.setattr(sagas.client, "_read", expired_copy if sync else expired_copy_async)
    worker, _ = scripted_worker(prefix)
    handle = await sagas.start("expired", [step(prefix, "create_order")])
    waiting = asyncio.create_task(handle.wait(WAIT_S))
    assert await asyncio.to_thread(handed_out.wait, WAIT_S)
    async with worker_task(worker, running_operator):  # no worker before: wait had to watch
        saga = await waiting
    assert saga.phase is SagaPhase.COMPLETED


async def phase_seen(sagas: Client, name: str, phase: SagaPhase) -> Saga:
    """Watch the saga (each phase change) until it is in ``phase``."""
    async for saga in sagas.watch(name, WAIT_S):
        if saga.phase is phase:
            return saga
    raise AssertionError(f"{name} settled without being {phase}")


async def test_suspend_and_resume_by_client_and_by_handle(
    running_operator: Settings, sagas: Client, prefix: str
) -> None:
    """suspend/resume patch spec.suspend of that saga; the operator shows Suspended and the
    phase it resumes to, then Running again. No worker serves the action: it stays Running."""
    unserved = [{"name": "a", "action": f"{prefix}-nobody.do"}]
    handle = await sagas.start("pausable", unserved)
    await phase_seen(sagas, "pausable", SagaPhase.RUNNING)
    assert (await handle.suspend()).spec.suspend
    held = await phase_seen(sagas, "pausable", SagaPhase.SUSPENDED)
    assert held.status is not None and held.status.resume_phase is SagaPhase.RUNNING
    assert not (await sagas.resume("pausable")).spec.suspend
    await phase_seen(sagas, "pausable", SagaPhase.RUNNING)
    assert (await sagas.suspend("pausable")).spec.suspend
    await phase_seen(sagas, "pausable", SagaPhase.SUSPENDED)
    assert not (await handle.resume()).spec.suspend


async def test_redrive_of_a_saga_not_failed_is_refused_and_changes_nothing(
    running_operator: Settings, sagas: Client, prefix: str
) -> None:
    """Only a saga Failed because a compensation failed can be redriven: anything else is
    SagaNotRedrivable, from the client and from the handle, and spec.redrive stays as it was."""
    unserved = [{"name": "a", "action": f"{prefix}-nobody.do"}]
    handle = await sagas.start("moving", unserved, labels={"team": "refunds"})
    await phase_seen(sagas, "moving", SagaPhase.RUNNING)
    with pytest.raises(SagaNotRedrivable, match="the saga is Running"):
        await sagas.redrive("moving")
    with pytest.raises(SagaNotRedrivable, match="only a saga Failed because a compensation"):
        await handle.redrive()
    assert (await sagas.get("moving")).spec.redrive == 0
    await sagas.start("other", unserved, labels={"team": "orders"})
    assert [h.name for h in await sagas.list_sagas("team=refunds")] == ["moving"]


async def test_redrive_by_handle_runs_the_failed_compensation_again_after_the_fix(
    running_operator: Settings, sagas: Client, prefix: str
) -> None:
    """A saga Failed because a refund failed: after the fix, handle.redrive bumps spec.redrive
    and wait sees it Compensated; a second redrive is refused (nothing left to redrive)."""
    worker, ledger, gateway = gateway_worker(prefix)
    async with worker_task(worker, running_operator):
        handle = await sagas.start("refund", refund_saga(prefix))
        assert (await handle.wait(WAIT_S)).phase is SagaPhase.FAILED
        gateway.down = False
        assert (await handle.redrive()).spec.redrive == 1
        final = await handle.wait(WAIT_S)
    assert final.phase is SagaPhase.COMPENSATED, final.status
    assert ledger.steps("undo", "refund") == ["payment", "order"]
    with pytest.raises(SagaNotRedrivable, match="rolled back cleanly"):
        await sagas.redrive("refund")
