"""Scale: many sagas in flight at once, then throughput in windows as the backlog drains.

The sagas are created while no worker runs, so each stops after dispatching its first step:
every one of them is in flight (in the operator's cache, with a command waiting in the queue).
The operator's RSS is read then. Workers are started next, and the operator's applied-results
counter is sampled in fixed windows until every saga finished or the time bound is reached.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from datetime import datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from bench.ceiling import sample_spec
from bench.e2e import FINAL, create_sagas
from bench.footprint import footprint
from bench.procs import PhaseConfig, Proc, scrape, start_operator, start_workers
from bench.procstat import CpuMeter, memory_kb
from bench.report import metric_sum
from kubesaga.store import SagaStore

POLL_S = 0.5


def _phases(metrics: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[str, int]:
    return {
        dict(labels).get("phase", "?"): int(value)
        for labels, value in metrics.get("kubesaga_sagas", {}).items()
    }


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
    create_seconds: float,
    drain_seconds: float,
    window_seconds: float,
    platform_pids: dict[str, list[int]],
    drain: bool = True,
) -> dict[str, Any]:
    """``drain=False`` stops after the in-flight figures (no workers): for the largest runs."""
    store = SagaStore(api)
    procs: list[Proc] = []
    windows: list[dict[str, Any]] = []
    try:
        operator = await start_operator(cfg)
        procs.append(operator)
        meter = CpuMeter({**platform_pids, "operator": [operator.pid], "bench": [os.getpid()]})
        async with aiohttp.ClientSession() as http:
            platform_before = await footprint(http, api, platform_pids)
            started = time.monotonic()
            meter.start(started)
            created_at: dict[str, datetime] = {}
            created = await create_sagas(
                store,
                cfg.namespace,
                "scale",
                sagas,
                sample_spec(cfg.action, steps),
                create_concurrency,
                started + create_seconds,
                created_at,
            )
            create_s = time.monotonic() - started
            # In flight = the first command of every saga published (status written first).
            deadline = started + create_seconds * 2
            metrics = await scrape(http, cfg.metrics_port)
            while (
                metric_sum(metrics, "kubesaga_commands_published_total") < created
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(POLL_S)
                metrics = await scrape(http, cfg.metrics_port)
            inflight_s = time.monotonic() - started
            dispatched = metric_sum(metrics, "kubesaga_commands_published_total")
            create_cpu = meter.stop(time.monotonic())
            memory_inflight = memory_kb(operator.pid)
            phases_inflight = _phases(metrics)
            platform_inflight = await footprint(http, api, platform_pids)
            print(
                f"bench: scale: {created} created in {create_s:.0f}s, in flight after "
                f"{inflight_s:.0f}s; operator RSS {memory_inflight.get('VmRSS', 0) / 1024:.0f} MB; "
                + " ".join(f"{k}={v}" for k, v in platform_inflight.items()),
                flush=True,
            )

            drain_meter = CpuMeter({**meter.pids})
            if not drain:
                drain_seconds = 0.0
            worker_procs = await start_workers(cfg, workers, concurrency, amqp_url) if drain else []
            procs += worker_procs
            drain_meter.pids["workers"] = [p.pid for p in worker_procs]
            drain_started = time.monotonic()
            drain_meter.start(drain_started)
            base = metric_sum(metrics, "kubesaga_results_total", verdict="applied")
            last_t, last_applied = drain_started, base
            finished = 0
            while time.monotonic() - drain_started < drain_seconds:
                await asyncio.sleep(
                    min(window_seconds, drain_seconds - (time.monotonic() - drain_started))
                )
                metrics = await scrape(http, cfg.metrics_port)
                now = time.monotonic()
                applied = metric_sum(metrics, "kubesaga_results_total", verdict="applied")
                phases = _phases(metrics)
                finished = sum(phases.get(p, 0) for p in FINAL)
                windows.append(
                    {
                        "t_s": round(now - drain_started, 1),
                        "steps_per_s": round((applied - last_applied) / max(now - last_t, 1e-9), 1),
                        "in_flight": created - finished,
                        "rss_mb": round(memory_kb(operator.pid).get("VmRSS", 0) / 1024, 1),
                    }
                )
                last_t, last_applied = now, applied
                if finished >= created:
                    break
            drain_elapsed = time.monotonic() - drain_started
            drain_cpu = drain_meter.stop(time.monotonic())
            total_applied = last_applied - base
        memory_end = memory_kb(operator.pid)
    finally:
        for proc in procs:
            await proc.stop()
    rates = [w["steps_per_s"] for w in windows]
    return {
        "sagas": sagas,
        "steps_per_saga": steps,
        "created": created,
        "create_seconds": round(create_s, 2),
        "creates_per_s": round(created / create_s, 1) if create_s > 0 else math.nan,
        "in_flight_after_s": round(inflight_s, 2),
        "dispatched_first_commands": dispatched,
        "phases_in_flight": phases_inflight,
        "operator_rss_in_flight_mb": round(memory_inflight.get("VmRSS", 0) / 1024, 1),
        "operator_peak_rss_mb": round(memory_end.get("VmHWM", 0) / 1024, 1),
        "operator_rss_per_saga_kb": round(memory_inflight.get("VmRSS", 0) / max(created, 1), 1),
        "platform_before": platform_before,
        "platform_in_flight": platform_inflight,
        "create_cpu": create_cpu,
        "drain_seconds": round(drain_elapsed, 2),
        "drain_steps": total_applied,
        "drain_steps_per_s": round(total_applied / drain_elapsed, 1) if drain_elapsed else 0.0,
        "drain_finished_sagas": finished,
        "drain_cpu": drain_cpu,
        "windows": windows,
        "window_steps_per_s_min": min(rates) if rates else math.nan,
        "window_steps_per_s_max": max(rates) if rates else math.nan,
    }
