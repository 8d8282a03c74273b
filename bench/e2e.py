"""End to end: N sagas of K no-op steps through the operator and the workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, watch

from bench import profiling, replicas
from bench.ceiling import sample_spec
from bench.procs import PhaseConfig, Proc, scrape, start_workers
from bench.procstat import CpuMeter, memory_kb
from bench.report import latency_summary, metric_sum
from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.store import SagaStore

FINAL = ("Completed", "Compensated", "Failed")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def step_gaps(records: list[list[Any]], steps: int) -> list[float]:
    """Step-to-step latencies: step i's handler returned -> step i+1's command received.

    ``records`` are ``[saga, step, attempt, received, returned]`` with steps named s0..s{K-1};
    for a step run more than once, its last attempt counts.
    """
    by_saga: dict[str, dict[int, tuple[int, float, float]]] = defaultdict(dict)
    for saga, step, attempt, received, returned in records:
        index = int(str(step)[1:])
        known = by_saga[str(saga)].get(index)
        if known is None or int(attempt) >= known[0]:
            by_saga[str(saga)][index] = (int(attempt), float(received), float(returned))
    gaps = []
    for runs in by_saga.values():
        for index in range(steps - 1):
            if index in runs and index + 1 in runs:
                gaps.append(runs[index + 1][1] - runs[index][2])
    return gaps


def read_timings(work_dir: Path) -> list[list[Any]]:
    records: list[list[Any]] = []
    for path in sorted(work_dir.glob("timings.*")):
        if path.name.endswith(".part"):
            continue
        with path.open(encoding="utf-8") as lines:
            records.extend(json.loads(line) for line in lines if line.strip())
    return records


class FinalWatch:
    """ONE watch over the namespace, counting sagas that reached a final phase."""

    def __init__(
        self, api: client.ApiClient, namespace: str, expected: int, prefix: str = "e2e-"
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.expected = expected
        self.prefix = prefix
        self.batch_final = 0
        self.waiters: dict[str, asyncio.Event] = {}
        self.errors: list[str] = []
        self.final: dict[str, tuple[str, float, datetime | None, datetime | None]] = {}
        """name -> (phase, monotonic time seen, finishedAt, creationTimestamp)."""
        self.done = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self, timeout: float) -> None:
        custom = client.CustomObjectsApi(self.api)
        listing = await custom.list_namespaced_custom_object(
            API_GROUP, API_VERSION, self.namespace, PLURAL
        )
        version = listing["metadata"]["resourceVersion"]
        self.started.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stream = watch.Watch().stream(
                custom.list_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                self.namespace,
                PLURAL,
                resource_version=version,
                timeout_seconds=max(1, int(deadline - time.monotonic())),
                allow_watch_bookmarks=True,
            )
            try:
                version = await self._consume(stream, version)
            except Exception as error:  # re-list and re-watch; say what happened
                self.errors.append(repr(error)[:300])
                if len(self.errors) > 20:
                    raise
                listing = await custom.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, PLURAL
                )
                for obj in listing.get("items", []):
                    self._see(obj)
                version = listing["metadata"]["resourceVersion"]

    async def _consume(self, stream: Any, version: str) -> str:
        async with stream:
            async for event in stream:
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {obj}")
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._see(obj)
        return version

    def _see(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        phase = status.get("phase")
        name = meta.get("name", "")
        if phase not in FINAL or name in self.final:
            return
        self.final[name] = (
            phase,
            time.monotonic(),
            parse_time(status.get("finishedAt")),
            parse_time(meta.get("creationTimestamp")),
        )
        if name.startswith(self.prefix):
            self.batch_final += 1
            if self.batch_final >= self.expected:
                self.done.set()
        waiter = self.waiters.get(name)
        if waiter is not None:
            waiter.set()

    async def wait_for(self, name: str, timeout: float) -> bool:
        """Whether saga ``name`` reached a final phase within ``timeout`` seconds."""
        if name in self.final:
            return True
        waiter = self.waiters.setdefault(name, asyncio.Event())
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def create_sagas(
    store: SagaStore,
    namespace: str,
    prefix: str,
    count: int,
    spec: dict[str, Any],
    concurrency: int,
    deadline: float,
    created_at: dict[str, datetime],
) -> int:
    """Create up to ``count`` sagas with ``concurrency`` requests in flight, until ``deadline``."""
    names = iter(f"{prefix}-{i:05d}" for i in range(count))
    made = 0

    async def creator() -> None:
        nonlocal made
        for name in names:
            if time.monotonic() >= deadline:
                return
            created_at[name] = datetime.now(UTC)
            await store.create(namespace, name, spec)
            made += 1

    await asyncio.gather(*(creator() for _ in range(concurrency)))
    return made


async def run(
    api: client.ApiClient,
    cfg: PhaseConfig,
    *,
    amqp_url: str,
    sagas: int,
    steps: int,
    workers: int,
    concurrency: int,
    create_concurrency: int,
    timeout: float,
    platform_pids: dict[str, list[int]],
    profile: bool,
    probes: int = 20,
    operators: int = 1,
    operator_cpu: float | None = None,
    run_id: str = "",
) -> dict[str, Any]:
    """``operators`` replicas share the work (each capped at ``operator_cpu`` cores if set);
    their metrics are summed, and each one's share is reported under ``replicas``."""
    store = SagaStore(api)
    procs: list[Proc] = []
    started_replicas: list[replicas.Replica] = []
    profiler: profiling.Profiler | None = None
    try:
        worker_procs = await start_workers(cfg, workers, concurrency, amqp_url)
        procs += worker_procs
        started_replicas = await replicas.start(cfg, operators, operator_cpu, run_id)
        operator = started_replicas[0].proc
        split = await replicas.wait_fair_split(api, cfg.namespace, operators)
        meter = CpuMeter(
            {
                **platform_pids,
                "operator": [r.proc.pid for r in started_replicas],
                "workers": [p.pid for p in worker_procs],
                "bench": [os.getpid()],
            }
        )
        final = FinalWatch(api, cfg.namespace, sagas)
        watcher = asyncio.create_task(final.run(timeout))
        await asyncio.wait_for(final.started.wait(), 30)
        async with aiohttp.ClientSession() as http:
            befores = [await scrape(http, r.port) for r in started_replicas]
            before = replicas.merged(befores)
            replicas.mark_cpu(started_replicas)
            if profile:
                profiler = await profiling.start(operator.pid, cfg.work_dir / "operator.pyspy")
            started = time.monotonic()
            meter.start(started)
            created_at: dict[str, datetime] = {}
            created = await create_sagas(
                store,
                cfg.namespace,
                "e2e",
                sagas,
                sample_spec(cfg.action, steps),
                create_concurrency,
                started + timeout,
                created_at,
            )
            created_s = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    final.done.wait(), max(1.0, started + timeout - time.monotonic())
                )
            ended = max(
                (t for n, (_, t, _, _) in final.final.items() if n.startswith("e2e-")),
                default=time.monotonic(),
            )
            cpu = meter.stop(time.monotonic())
            profile_summary = await profiling.stop(profiler) if profiler else None
            profiler = None
            afters = [await scrape(http, r.port) for r in started_replicas]
            after = replicas.merged(afters)
            shares = replicas.shares(started_replicas, befores, afters)
            # Latency probe: sagas one at a time on the otherwise idle pipeline.
            probe_spec = sample_spec(cfg.action, steps)
            probe_deadline = time.monotonic() + timeout / 4
            probed = 0
            for index in range(probes):
                if time.monotonic() >= probe_deadline:
                    break
                name = f"probe-{index:04d}"
                await store.create(cfg.namespace, name, probe_spec)
                if not await final.wait_for(name, max(probe_deadline - time.monotonic(), 0.1)):
                    break
                probed += 1
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        memory = memory_kb(operator.pid)
        for proc in worker_procs:
            await proc.stop()
        await replicas.stop(started_replicas)
        records = read_timings(cfg.work_dir)
    finally:
        if profiler is not None:
            await profiling.stop(profiler)
        for proc in procs:
            await proc.stop()
        await replicas.stop(started_replicas)

    def delta(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    elapsed = max(ended - started, 1e-9)
    applied = delta("kubesaga_results_total", verdict="applied")
    writes = delta("kubesaga_status_writes_total")
    # Events are posted by one task behind the transitions: count those still queued at the end
    # too, they are writes this window's steps caused.
    events_posted = delta("kubesaga_events_posted_total") + delta("kubesaga_events_pending")
    completion = []
    completion_server = []
    batch = {n: v for n, v in final.final.items() if n.startswith("e2e-")}
    completed = sum(1 for phase, *_ in batch.values() if phase == "Completed")
    for name, (_, _, finished, creation) in batch.items():
        if finished is not None and name in created_at:
            completion.append((finished - created_at[name]).total_seconds())
        if finished is not None and creation is not None:
            completion_server.append((finished - creation).total_seconds())
    gaps = step_gaps([r for r in records if str(r[0]).startswith("e2e-")], steps)
    probe_gaps = step_gaps([r for r in records if str(r[0]).startswith("probe-")], steps)
    return {
        "sagas": sagas,
        "steps_per_saga": steps,
        "workers": workers,
        "worker_concurrency": concurrency,
        "events": cfg.events,
        "log_level": cfg.log_level,
        "created": created,
        "create_seconds": round(created_s, 3),
        "finished": len(batch),
        "completed": completed,
        "seconds": round(elapsed, 3),
        "steps": applied,
        "steps_per_s": round(applied / elapsed, 1),
        "status_writes": writes,
        "writes_per_step": round(writes / applied, 3) if applied else math.nan,
        "events_posted": events_posted,
        "api_writes_per_step": round((writes + events_posted) / applied, 3)
        if applied
        else math.nan,
        "conflicts_409": delta("kubesaga_status_conflicts_total"),
        "commands_published": delta("kubesaga_commands_published_total"),
        "results": {
            verdict: delta("kubesaga_results_total", verdict=verdict)
            for verdict in ("applied", "duplicate", "rejected")
        },
        "completion": {k: round(v, 2) for k, v in latency_summary(completion).items()},
        "completion_from_creation_timestamp": {
            k: round(v, 2) for k, v in latency_summary(completion_server).items()
        },
        "step_to_step": {k: round(v, 3) for k, v in latency_summary(gaps).items()},
        "probe_sagas": probed,
        "probe_step_to_step": {k: round(v, 3) for k, v in latency_summary(probe_gaps).items()},
        "handler_records": len(records),
        "watch_errors": final.errors,
        "operator_cpu_s": cpu.get("operator", {}).get("cpu_s", math.nan),
        "operator_peak_rss_mb": round(memory.get("VmHWM", 0) / 1024, 1),
        "cpu": cpu,
        "cpu_ms_per_step": {
            name: round(1000 * v["cpu_s"] / applied, 2) if applied else math.nan
            for name, v in cpu.items()
        },
        "profile": profile_summary,
        "operators": operators,
        "operator_cpu_quota_cores": operator_cpu,
        "shards_at_start": sorted(split.values(), reverse=True),
        "conflicts_per_step": round(delta("kubesaga_status_conflicts_total") / applied, 4)
        if applied
        else math.nan,
        "replicas": shares,
    }
