"""The raw ceiling: Saga status writes/s with a resourceVersion precondition.

The same write the operator makes (``SagaStore.replace_status``: a PUT of the status
subresource carrying ``metadata.resourceVersion``), of a status the size of a finished 3-step
saga, whose ``message`` changes on every write (an identical status would be a no-op for the
apiserver and not reach etcd). The objects are in a namespace no operator watches.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio import client

from bench.procstat import CpuMeter
from bench.report import latency_summary
from kubesaga.models import SagaStatus
from kubesaga.store import Conflict, SagaObject, SagaStore


def sample_status(steps: int = 3) -> dict[str, Any]:
    """A Completed saga's status with ``steps`` succeeded steps (realistic size)."""
    now = datetime.now(UTC)
    raw: dict[str, Any] = {
        "phase": "Completed",
        "progress": f"{steps}/{steps}",
        "message": "",
        "reason": "Completed",
        "observedGeneration": 1,
        "startedAt": now.isoformat(),
        "finishedAt": (now + timedelta(seconds=1)).isoformat(),
        "conditions": [
            {
                "type": "Finished",
                "status": "True",
                "reason": "Completed",
                "message": "all steps succeeded",
                "lastTransitionTime": now.isoformat(),
            }
        ],
        "steps": [
            {
                "name": f"s{i}",
                "phase": "Succeeded",
                "attempt": 1,
                "dispatchId": f"bench-{i}-000000000000",
                "dispatchedAt": now.isoformat(),
                "startedAt": now.isoformat(),
                "finishedAt": now.isoformat(),
                "output": {},
            }
            for i in range(steps)
        ],
    }
    return SagaStatus.model_validate(raw).to_wire()


def sample_spec(action: str, steps: int = 3) -> dict[str, Any]:
    return {"steps": [{"name": f"s{i}", "action": action} for i in range(steps)]}


async def _write_loop(
    store: SagaStore,
    pool: asyncio.Queue[SagaObject],
    status: dict[str, Any],
    budget: list[int],
    deadline: float,
    latencies: list[float],
    counters: dict[str, int],
) -> None:
    while budget[0] > 0 and time.monotonic() < deadline:
        budget[0] -= 1
        obj = await pool.get()
        body = dict(status, message=f"bench write {counters['seq']}")
        counters["seq"] += 1
        started = time.perf_counter()
        try:
            written = await store.replace_status(obj, body)
        except Conflict:
            counters["conflicts"] += 1
            written = await store.get(*obj.key)
        else:
            latencies.append(time.perf_counter() - started)
        pool.put_nowait(written)


async def measure(
    api: client.ApiClient,
    store: SagaStore,
    objects: list[SagaObject],
    writers: int,
    writes: int,
    seconds: float,
    meter: CpuMeter,
) -> tuple[dict[str, Any], list[SagaObject]]:
    """``writers`` concurrent writers over ``objects``, each object held by one writer at a time."""
    pool: asyncio.Queue[SagaObject] = asyncio.Queue()
    for obj in objects:
        pool.put_nowait(obj)
    status = sample_status()
    latencies: list[float] = []
    counters = {"seq": 0, "conflicts": 0}
    budget = [writes]
    started = time.monotonic()
    meter.start(started)
    await asyncio.gather(
        *(
            _write_loop(store, pool, status, budget, started + seconds, latencies, counters)
            for _ in range(writers)
        )
    )
    ended = time.monotonic()
    cpu = meter.stop(ended)
    elapsed = ended - started
    latest = [pool.get_nowait() for _ in range(pool.qsize())]
    return {
        "objects": len(objects),
        "writers": writers,
        "writes": len(latencies),
        "conflicts": counters["conflicts"],
        "seconds": round(elapsed, 3),
        "writes_per_s": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        **{k: round(v, 2) for k, v in latency_summary(latencies).items() if k != "count"},
        "cpu": cpu,
    }, latest


async def run(
    api: client.ApiClient,
    namespace: str,
    *,
    sequential_writes: int,
    concurrent_writes: int,
    objects: int,
    writers: int,
    seconds: float,
    meter: CpuMeter,
) -> dict[str, Any]:
    store = SagaStore(api)
    spec = sample_spec("bench.ceiling")
    created = await asyncio.gather(
        *(store.create(namespace, f"ceiling-{i}", spec) for i in range(objects))
    )
    # Warm-up: the first writes pay for connection setup and caches.
    _, warmed = await measure(api, store, list(created), writers, 4 * writers, seconds, meter)
    first = next(o for o in warmed if o.name == "ceiling-0")
    sequential, after = await measure(api, store, [first], 1, sequential_writes, seconds, meter)
    pool = [o for o in warmed if o.name != "ceiling-0"] + after
    concurrent, _ = await measure(api, store, pool, writers, concurrent_writes, seconds, meter)
    return {"sequential": sequential, "concurrent": concurrent}
