"""The orchestrator against an in-memory store, a recording broker and a fake clock.

One behaviour per test; nothing is started and no test waits on real time. The platform tests
(tests/integration) prove the same loop against a real apiserver and RabbitMQ.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

import kubesaga.operator.orchestrator as orchestrator_module
from kubesaga import engine
from kubesaga.broker import Disposition
from kubesaga.models import CommandKind, Result, ResultStatus, SagaRef
from kubesaga.operator import Orchestrator
from kubesaga.operator.orchestrator import CONFLICT_BACKOFF_BASE
from kubesaga.operator.ttl import TTL_RETRY_SECONDS
from kubesaga.store import Conflict, NotFound
from tests.unit.orchestrator_kit import NS, Rig, failed, phase, spec, steps, succeeded


async def until(condition: object, limit: int = 1000) -> None:
    """Yield to the loop until ``condition()`` holds (event-driven; bounded, no timed sleep)."""
    for _ in range(limit):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def conflicts(o: Orchestrator) -> float:
    return o.metrics.registry.get_sample_value("kubesaga_status_conflicts_total") or 0.0


async def started(rig: Rig, name: str, body: Mapping[str, Any]) -> None:
    rig.store.create(name, body)
    await rig.settle()


async def test_first_look_writes_status_and_publishes_the_first_step() -> None:
    rig = Rig()
    await started(rig, "s", spec("a", "b"))
    assert phase(rig.store, "s") == "Running"
    assert [c.step for c in rig.broker.published] == ["a"]
    assert rig.store.status_writes == 1


async def test_results_arriving_during_a_write_are_folded_into_the_next_write() -> None:
    rig = Rig()
    parallel = {"steps": [{"name": n, "action": f"{n}.do", "dependsOn": []} for n in "abc"]}
    await started(rig, "s", parallel)
    a, b, c = rig.broker.published
    writes = rig.store.status_writes
    rig.store.write_gate = asyncio.Event()
    first = asyncio.create_task(rig.orchestrator.on_result(succeeded(a)))
    await until(lambda: rig.store.writes_waiting == 1)
    later = [asyncio.create_task(rig.orchestrator.on_result(succeeded(x))) for x in (b, c)]
    await asyncio.sleep(0)
    rig.store.write_gate.set()
    outcomes = await asyncio.gather(first, *later)
    await rig.settle()
    assert [o.disposition for o in outcomes] == [Disposition.ACK] * 3
    assert rig.store.status_writes - writes == 2  # a alone, then b and c together
    assert phase(rig.store, "s") == "Completed"


async def test_a_409_rereads_redecides_and_backs_off_with_jitter() -> None:
    rig = Rig()
    await started(rig, "s", spec("a", "b"))
    rig.rand = 0.25
    rig.store.interfere_next = 2  # two writes by someone else slip in before ours
    outcome = await rig.orchestrator.on_result(succeeded(rig.broker.sent("a")[0]))
    assert outcome.disposition is Disposition.ACK
    assert rig.clock.slept == [0.25 * CONFLICT_BACKOFF_BASE, 0.25 * CONFLICT_BACKOFF_BASE * 2]
    assert conflicts(rig.orchestrator) == 2
    assert dict(steps(rig.store, "s"))["a"] == "Succeeded"
    assert [c.step for c in rig.broker.published] == ["a", "b"]


async def test_a_publish_that_failed_after_the_write_is_sent_again_within_seconds() -> None:
    """Not only after ``redeliver_after`` (300 s by default): until then a broker hiccup on the
    first publish left the saga waiting that long."""
    rig = Rig(redeliver_after=300)
    rig.broker.fail_next = 1
    await started(rig, "s", spec("a"))
    recorded = rig.store.status("s")["steps"][0]["dispatchId"]
    assert rig.broker.published == []
    await rig.advance(2)
    assert rig.broker.dispatch_ids() == [recorded]


async def test_a_write_whose_answer_timed_out_after_it_was_applied_publishes_within_seconds() -> (
    None
):
    """The apiserver applied the status write (its dispatch recorded) but the answer never came:
    the command was never published, and not after ``redeliver_after`` only (a bench run at
    0.05 core left 16 of 150 sagas waiting so, their writes timed out on connect)."""
    rig = Rig(redeliver_after=300)
    replace = rig.store.replace_status

    async def applied_then_timed_out(saga: Any, status: Mapping[str, Any]) -> Any:
        rig.store.replace_status = replace  # type: ignore[method-assign]
        await replace(saga, status)
        raise TimeoutError

    rig.store.replace_status = applied_then_timed_out  # type: ignore[method-assign]
    rig.store.create("s", spec("a"))
    await rig.advance(2)  # the write's own watch event, or the retry after the error
    recorded = rig.store.status("s")["steps"][0]["dispatchId"]
    assert rig.broker.dispatch_ids() == [recorded]


async def test_an_unanswered_command_is_published_again_after_redeliver_after() -> None:
    rig = Rig(redeliver_after=30)
    await started(rig, "s", spec("a"))
    await rig.advance(29)
    assert len(rig.broker.published) == 1
    await rig.advance(1)
    first, again = rig.broker.published
    assert again.dispatch_id == first.dispatch_id


async def test_a_redelivery_waiting_for_its_confirm_is_not_sent_again() -> None:
    rig = Rig(redeliver_after=30)
    await started(rig, "s", spec("a"))
    rig.broker.hold = asyncio.Event()  # the broker is slow to confirm
    rig.clock.advance(30)
    for _ in range(50):
        rig.clock.advance(0)
        await asyncio.sleep(0)
    assert rig.broker.held == 1
    rig.broker.hold.set()
    await rig.settle()
    assert len(rig.broker.published) == 2


async def test_an_attempt_that_times_out_is_retried_with_a_new_dispatch() -> None:
    rig = Rig()
    body = spec("a")
    body["steps"][0] |= {"timeoutSeconds": 10, "retry": {"maxAttempts": 2, "backoffSeconds": 0}}
    await started(rig, "s", body)
    await rig.advance(10)
    first, retry = rig.broker.sent("a")
    assert (first.attempt, retry.attempt) == (1, 2)
    assert retry.dispatch_id != first.dispatch_id


async def test_the_saga_deadline_starts_compensation() -> None:
    rig = Rig()
    await started(rig, "s", spec("a", "b", deadlineSeconds=60))
    await rig.orchestrator.on_result(succeeded(rig.broker.sent("a")[0]))
    await rig.settle()
    await rig.advance(60)
    assert phase(rig.store, "s") == "Compensating"
    await rig.orchestrator.on_result(succeeded(rig.broker.sent("b")[0]))  # b was in flight
    await rig.settle()
    assert len(rig.broker.sent("b", CommandKind.COMPENSATE)) == 1


async def finished_with_ttl(rig: Rig, ttl: int) -> None:
    await started(rig, "s", spec("a", ttlSecondsAfterFinished=ttl))
    await rig.orchestrator.on_result(succeeded(rig.broker.sent("a")[0]))
    await rig.settle()
    assert phase(rig.store, "s") == "Completed"


async def test_a_finished_saga_is_deleted_when_its_ttl_passes() -> None:
    rig = Rig()
    await finished_with_ttl(rig, 30)
    await rig.advance(29)
    assert rig.store.deleted == []
    await rig.advance(1)
    assert rig.store.deleted == [(NS, "s")]
    assert rig.orchestrator.cache.get((NS, "s")) is None


@pytest.mark.parametrize("error", [NotFound("gone"), Conflict("uid precondition")])
async def test_a_ttl_delete_that_finds_it_gone_or_replaced_is_final(error: Exception) -> None:
    rig = Rig()
    await finished_with_ttl(rig, 30)
    rig.store.delete_errors = [error]
    await rig.advance(30)
    assert rig.clock.pending() == []
    assert rig.orchestrator.cache.get((NS, "s")) is None


async def test_a_ttl_delete_that_fails_otherwise_is_retried() -> None:
    rig = Rig()
    await finished_with_ttl(rig, 30)
    rig.store.delete_errors = [RuntimeError("apiserver unavailable")]
    await rig.advance(30)
    assert rig.store.deleted == []
    await rig.advance(TTL_RETRY_SECONDS)
    assert rig.store.deleted == [(NS, "s")]


async def test_two_orchestrators_on_one_store_publish_each_dispatch_once() -> None:
    rig = Rig(replicas=2)
    await started(rig, "s", spec("a", "b", "c"))
    for i, name in enumerate("abc"):
        answering = rig.orchestrators[i % 2]
        outcome = await answering.on_result(succeeded(rig.broker.sent(name)[0]))
        assert outcome.disposition is Disposition.ACK
        await rig.settle()
    assert phase(rig.store, "s") == "Completed"
    assert set(Counter(rig.broker.dispatch_ids()).values()) == {1}
    attempts = Counter((c.step, c.kind, c.attempt) for c in rig.broker.published)
    assert set(attempts.values()) == {1}  # the loser of a race publishes nothing it decided
    assert rig.store.conflicts >= 1  # they did race for the first write


async def test_a_new_orchestrator_republishes_what_is_in_flight_once() -> None:
    rig = Rig()
    await started(rig, "s", spec("a", "b"))
    newcomer = Orchestrator(rig.store, rig.broker, clock=rig.clock)
    obj = await rig.store.get(NS, "s")
    newcomer.observe(obj)
    newcomer.observe(obj)
    await newcomer.tasks.wait()
    first, again = rig.broker.published
    assert again.dispatch_id == first.dispatch_id
    await newcomer.close()


async def test_a_new_orchestrator_sends_the_retry_of_a_timed_out_attempt_not_the_attempt() -> None:
    """Resume is decided first: an attempt that timed out while no operator ran is retried by
    the engine, and only what is still in flight afterwards is re-published."""
    rig = Rig()
    body = spec("a")
    body["steps"][0] |= {"timeoutSeconds": 10, "retry": {"maxAttempts": 2, "backoffSeconds": 0}}
    await started(rig, "s", body)
    await rig.orchestrator.close()  # the operator is gone for longer than the timeout
    rig.clock.advance(60)
    newcomer = Orchestrator(rig.store, rig.broker, clock=rig.clock)
    newcomer.observe(await rig.store.get(NS, "s"))
    await newcomer.tasks.wait()
    assert [c.attempt for c in rig.broker.sent("a")] == [1, 2]
    await newcomer.close()


async def test_a_redelivery_due_with_the_timeout_sends_the_retry_only() -> None:
    rig = Rig(redeliver_after=10)
    body = spec("a")
    body["steps"][0] |= {"timeoutSeconds": 10, "retry": {"maxAttempts": 2, "backoffSeconds": 0}}
    await started(rig, "s", body)
    await rig.advance(10)
    assert [c.attempt for c in rig.broker.sent("a")] == [1, 2]


async def test_a_spec_that_does_not_parse_fails_the_saga_and_its_results_are_dead_lettered() -> (
    None
):
    rig = Rig()
    await started(rig, "s", {"steps": [{"name": "Not A Name", "action": "a.do"}]})
    status = rig.store.status("s")
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    uid = rig.store.objects[(NS, "s")]["metadata"]["uid"]
    result = Result(
        dispatch_id=f"{uid}/a/execute/1/x",
        saga=SagaRef(namespace=NS, name="s", uid=uid),
        step="a",
        kind=CommandKind.EXECUTE,
        attempt=1,
        status=ResultStatus.SUCCEEDED,
    )
    outcome = await rig.orchestrator.on_result(result)
    assert (outcome.disposition, outcome.reason) == (
        Disposition.DEAD_LETTER,
        "saga spec is invalid",
    )
    assert rig.broker.published == [] and rig.store.status_writes == 1


async def test_a_failed_step_is_compensated() -> None:
    rig = Rig()
    await started(rig, "s", spec("a", "b"))
    await rig.orchestrator.on_result(succeeded(rig.broker.sent("a")[0]))
    await rig.settle()
    await rig.orchestrator.on_result(failed(rig.broker.sent("b")[0]))
    await rig.settle()
    await rig.orchestrator.on_result(succeeded(rig.broker.sent("a", CommandKind.COMPENSATE)[0]))
    await rig.settle()
    assert phase(rig.store, "s") == "Compensated"


async def close_while_held(o: Orchestrator, hold: asyncio.Event) -> None:
    """``close()`` does not return while a publish is held, and does once it is released."""
    closing = asyncio.create_task(o.close())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done()
    hold.set()
    await closing
    assert len(o.tasks) == 0


async def test_close_waits_for_a_publish_in_flight() -> None:
    rig = Rig()
    rig.broker.hold = asyncio.Event()
    rig.store.create("s", spec("a"))
    rig.orchestrator.observe(rig.streams[0].pop()[1])
    await until(lambda: rig.broker.held == 1)
    await close_while_held(rig.orchestrator, rig.broker.hold)
    assert [c.step for c in rig.broker.published] == ["a"]


async def test_close_waits_for_a_republish_in_flight() -> None:
    rig = Rig()
    await started(rig, "s", spec("a"))
    newcomer = Orchestrator(rig.store, rig.broker, clock=rig.clock)
    rig.broker.hold = asyncio.Event()
    newcomer.observe(await rig.store.get(NS, "s"))
    await until(lambda: rig.broker.held >= 1)
    await close_while_held(newcomer, rig.broker.hold)
    assert len(rig.broker.published) == 2


async def test_a_result_queued_when_closing_is_requeued_not_left_hanging() -> None:
    rig = Rig()
    await started(rig, "s", spec("a"))
    rig.store.write_gate = asyncio.Event()
    command = rig.broker.sent("a")[0]
    first = asyncio.create_task(rig.orchestrator.on_result(succeeded(command)))
    await until(lambda: rig.store.writes_waiting == 1)
    queued = asyncio.create_task(rig.orchestrator.on_result(succeeded(command)))
    await asyncio.sleep(0)
    closing = asyncio.create_task(rig.orchestrator.close())
    await asyncio.sleep(0)
    rig.store.write_gate.set()
    await closing
    assert (await first).disposition is Disposition.ACK
    assert (await queued).disposition is Disposition.REQUEUE


async def test_a_relist_after_410_re_decides_nothing_the_operator_has_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a 410 the watch lists every saga again as ADDED, each at the resourceVersion the
    operator already holds: none may be decided, written or published again (at 10,000 sagas
    that would be 10,000 decisions at once, right when the apiserver is recovering)."""
    rig = Rig()
    for name in ("s1", "s2", "s3"):
        await started(rig, name, spec("a", "b"))
    decided: list[int] = []
    real = engine.decide_all

    def counting(*args: Any, **kwargs: Any) -> Any:
        decided.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(orchestrator_module, "decide_all", counting)
    writes, published = rig.store.status_writes, len(rig.broker.published)
    for name in ("s1", "s2", "s3"):  # the relist: the current copy of each, once more
        rig.orchestrator.observe(await rig.store.get(NS, name))
    await rig.settle()
    assert decided == []
    assert (rig.store.status_writes, len(rig.broker.published)) == (writes, published)
