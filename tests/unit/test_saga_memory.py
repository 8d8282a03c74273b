"""What the operator keeps per saga: compact records, bounded parsed views, no leaked contexts.

Memory per saga in flight is what limits how many sagas one operator holds (bench/README.md,
scale phase); these pin the structure that keeps it small, not a size in bytes.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from kubesaga.engine import SagaView
from kubesaga.operator.cache import SagaCache
from kubesaga.operator.clock import SystemClock
from kubesaga.operator.tasks import TaskSet
from kubesaga.store import SagaObject
from tests.unit.orchestrator_kit import NS, Rig, phase, spec, succeeded

STEP = {"name": "a", "action": "a.do"}


def watched(name: str, status: dict[str, Any] | None, rv: str = "7") -> SagaObject:
    """A Saga as a watch event carries it: managedFields, annotations, labels and all."""
    raw: dict[str, Any] = {
        "apiVersion": "kubesaga.io/v1alpha1",
        "kind": "Saga",
        "metadata": {
            "namespace": NS,
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "generation": 1,
            "labels": {"team": "payments"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}" * 100},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"steps": [STEP]},
    }
    if status is not None:
        raw["status"] = status
    return SagaObject(raw)


def running() -> dict[str, Any]:
    return {
        "phase": "Running",
        "steps": [{"name": "a", "phase": "Running", "attempt": 1, "dispatchId": "d/a/1"}],
    }


def test_the_cached_copy_keeps_identity_only_not_the_raw_object() -> None:
    cache = SagaCache()
    obj = watched("s", running())
    assert cache.offer(obj)
    kept = cache.get(obj.key)
    assert kept is not None
    assert kept.raw == {
        "metadata": {
            "namespace": NS,
            "name": "s",
            "uid": "uid-s",
            "resourceVersion": "7",
            "generation": 1,
        }
    }
    assert kept.raw is not obj.raw


def test_the_view_from_the_compact_record_equals_the_view_from_the_raw_copy() -> None:
    compact, raw = SagaCache(), SagaCache()
    obj = watched("s", running())
    compact.offer(obj)
    kept = compact.get(obj.key)
    assert kept is not None
    from_record = compact.view(kept)
    assert isinstance(from_record, SagaView)
    assert from_record == raw.view(obj)
    assert from_record.status is not None and from_record.status.steps[0].dispatch_id == "d/a/1"


def test_a_finished_saga_is_a_bare_record_read_again_from_the_api_when_needed() -> None:
    cache = SagaCache()
    obj = watched("done", {"phase": "Completed", "steps": [{"name": "a", "phase": "Succeeded"}]})
    cache.offer(obj)
    record = cache.record(obj.key)
    assert record is not None
    assert (record.spec, record.status, record.deadline) == (None, None, None)
    assert cache.phases() == ["Completed"]
    assert cache.get(obj.key) is None  # the orchestrator reads it from the API
    assert not cache.offer(obj)  # the same copy again is still known
    view = cache.view(obj)  # a copy read from the API parses from itself
    assert isinstance(view, SagaView) and view.status is not None


async def test_after_a_saga_finishes_the_operator_keeps_no_spec_or_status_for_it() -> None:
    rig = Rig()
    rig.store.create("s", spec("a"))
    await rig.settle()
    (command,) = rig.broker.published
    await rig.orchestrator.on_result(succeeded(command))
    await rig.settle()
    assert phase(rig.store, "s") == "Completed"
    record = rig.orchestrator.cache.record((NS, "s"))
    assert record is not None and record.phase == "Completed"
    assert (record.spec, record.status) == (None, None)


def test_parsed_views_are_kept_for_the_most_recently_used_sagas_only() -> None:
    cache = SagaCache(views=2)
    copies = [watched(f"s{i}", running()) for i in range(3)]
    for obj in copies:
        cache.offer(obj)
    first = cache.view(copies[0])
    assert cache.view(copies[0]) is first  # hot: not parsed again
    cache.view(copies[1])
    cache.view(copies[2])  # the least recently used (s0) leaves the window
    again = cache.view(copies[0])
    assert again is not first and again == first


async def test_tasks_and_timers_do_not_keep_their_creators_context() -> None:
    """kopf's handler context holds the whole watch event; a saga's timer must not keep it."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("event", default="none")
    var.set("a watch event body")
    seen: list[str] = []
    tasks = TaskSet()

    async def task() -> None:
        seen.append(var.get())

    tasks.spawn(task(), name="t")
    await tasks.wait()
    fired = asyncio.Event()

    def timer() -> None:
        seen.append(var.get())
        fired.set()

    SystemClock().call_at(0.0, timer)
    await fired.wait()
    assert seen == ["none", "none"]
