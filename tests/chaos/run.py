"""One chaos run: sagas created at a steady rate while a scenario's faults happen, then checked.

A ``Scenario`` says which faults: process kills (operators, workers), broker restarts, and a
``Schedule`` of platform and network faults (``tests/chaos/faults.py``). Every run also injects
duplicate and stale results and patches the Sagas' labels from another client (409s). At the
end, by one watch over the namespace: every saga is in its expected final phase within a bounded
time, and the handlers' ledger shows no forward step dispatched after compensation began,
compensations in reverse dependency order, each succeeded step undone exactly once in net
effect, and every stale result dead-lettered with its reason (``tests/chaos/audit.py``).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubesaga.client import AsyncSagaClient, SagaApiError
from kubesaga.models import SagaSpec, SagaStatus, parse_status
from kubesaga.operator.shards import shard_queue
from kubesaga.settings import Settings
from tests.chaos.audit import audit, load_ledger
from tests.chaos.conftest import FIGURES, Platform, chaos_time_budget
from tests.chaos.faults import Chaos, Schedule
from tests.chaos.figures import Figures, Timeline, window_lines
from tests.chaos.injector import Injector, collect_dead_letters, dead_letter_key, reason_kind
from tests.chaos.sagas import EXPECTED, FINAL, KINDS, NamespaceWatch, patch_labels, saga_steps
from tests.faults.platform import (
    amqp_address,
    apiserver_address,
    proxied_amqp_url,
    proxied_kubeconfig,
)
from tests.faults.proxy import TcpProxy

OPERATOR_KILL_EVERY_S = 4.0
WORKER_KILL_EVERY_S = 3.0
REDELIVER_AFTER_S = 5.0
DEAD_LETTER_WAIT_S = 60.0
CREATE_RETRY_S = 0.5
FULL_SIZE = 100
HEARTBEAT_S = 5
"""The operators' AMQP heartbeat in chaos runs: a dead connection is given up in ~18 s."""
SHARD_LEASE_S = 5
SHARD_RENEW_S = 1.5
"""Short shard Leases: a killed replica's shards move to the others within seconds (a killed
replica restarts with a new identity, so it cannot pick its own Leases up again)."""
SCALE_EVERY_S = 7.0


@dataclass(frozen=True)
class Scenario:
    name: str
    sagas: int
    kills: bool = False
    """Operators and workers SIGKILLed and restarted throughout."""
    broker_restarts: bool = False
    schedule: Schedule | None = None
    proxies: bool = False
    """The operators reach the apiserver and the broker through proxies (network faults)."""
    replicas: int = 2
    """Operator replicas sharing the shards; ``scaling`` adds and removes one throughout."""
    scaling: bool = False
    min_window_s: float = 20.0
    """Create sagas over at least this long, so the schedule's faults meet running sagas (half
    of it, with faults half as long, at CI sizes: below ``FULL_SIZE`` sagas)."""


async def _create(client: AsyncSagaClient, name: str, steps: Any, prefix: str) -> SagaSpec:
    """Create a saga; while the apiserver restarts, try again (``start`` is idempotent: an
    earlier try that landed is returned as it is)."""
    while True:
        try:
            async with asyncio.timeout(30):
                return (await client.start(name, steps, {"run": prefix})).spec
        except SagaApiError as error:
            if error.status < 500 and error.status != 429:
                raise
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        await asyncio.sleep(CREATE_RETRY_S)  # the apiserver is restarting: try again


async def run_scenario(
    platform: Platform, scenario: Scenario, tmp_path: Path, request: pytest.FixtureRequest
) -> Figures:
    """Run ``scenario``, leave its figures for the terminal summary, assert the invariants."""
    seed = int(os.environ.get("KUBESAGA_CHAOS_SEED", "0")) or random.randrange(1, 10**6)
    rng = random.Random(seed)
    prefix = f"c{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kubeconfig=platform.kubeconfig,
        amqp_url=platform.amqp_url,
        namespaces=[platform.namespace],
        results_queue=f"{prefix}.results",
        dead_letter_queue=f"{prefix}.dead-letter",
        metrics_port=0,
        redeliver_after_seconds=REDELIVER_AFTER_S,
        events="phases",
        amqp_heartbeat_seconds=HEARTBEAT_S,
        pod_namespace=platform.namespace,
        shard_lease_seconds=SHARD_LEASE_S,
        shard_renew_seconds=SHARD_RENEW_S,
    )
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    figures = Figures(scenario=scenario.name)
    timeline = Timeline()
    budget = chaos_time_budget(scenario.sagas) + (120 if scenario.schedule else 0)
    scale = 1.0 if scenario.sagas >= FULL_SIZE else 0.5
    window = max(scenario.sagas / max(1.5, scenario.sagas / 90), scenario.min_window_s * scale)
    rate = scenario.sagas / window  # sagas created per second

    api_proxy = broker_proxy = None
    operator_settings = settings
    if scenario.proxies:
        api_proxy = TcpProxy(*apiserver_address(platform.kubeconfig))
        broker_proxy = TcpProxy(*amqp_address(platform.amqp_url))
        api_port, broker_port = await api_proxy.start(), await broker_proxy.start()
        operator_settings = settings.model_copy(
            update={
                "kubeconfig": proxied_kubeconfig(
                    platform.kubeconfig, api_port, tmp_path / "kubeconfig"
                ),
                "amqp_url": proxied_amqp_url(platform.amqp_url, broker_port),
            }
        )
    chaos = Chaos(
        operator_settings,
        settings,
        prefix,
        ledger,
        figures,
        timeline,
        rng,
        window,
        scale,
        api_proxy=api_proxy,
        broker_proxy=broker_proxy,
        replicas=scenario.replicas,
    )
    saga_client = AsyncSagaClient(platform.api_client, platform.namespace)
    watcher = NamespaceWatch(platform.api_client, platform.namespace)
    watcher.final_at = timeline.final_at
    watcher.status_changes = timeline.status_changes
    injector = Injector(
        platform.amqp_url,
        settings.results_queue,
        f"{prefix}.tap",
        rng,
        tuple(shard_queue(settings.results_queue, n) for n in range(settings.shards)),
    )
    specs: dict[str, SagaSpec] = {}
    expected: dict[str, str] = {}
    names: list[str] = []
    patches: Counter[str] = Counter()
    t0 = time.monotonic()
    tasks: list[asyncio.Task[Any]] = []
    try:
        await chaos.start()
        await injector.start()
        tasks = [
            asyncio.create_task(watcher.run()),
            asyncio.create_task(chaos.sample_readiness()),
            asyncio.create_task(
                patch_labels(platform.api_client, platform.namespace, names, patches, chaos.stop)
            ),
        ]
        if scenario.kills:
            tasks += [
                asyncio.create_task(chaos.every(OPERATOR_KILL_EVERY_S, chaos.kill_operator)),
                asyncio.create_task(chaos.every(WORKER_KILL_EVERY_S, chaos.kill_worker)),
            ]
        if scenario.scaling:
            tasks.append(asyncio.create_task(chaos.every(SCALE_EVERY_S, chaos.scale_operators)))
        if scenario.broker_restarts:
            tasks.append(asyncio.create_task(_broker_restarts(chaos, window)))
        if scenario.schedule is not None:
            tasks.append(asyncio.create_task(scenario.schedule(chaos)))
        for i in range(scenario.sagas):
            kind = KINDS[i % len(KINDS)]
            name = f"s{i:04d}-{kind}"
            timeline.created[name] = time.monotonic()
            specs[name] = await _create(saga_client, name, saga_steps(kind, prefix, rng), prefix)
            expected[name] = EXPECTED[kind]
            watcher.expected.add(name)
            names.append(name)
            figures.sagas += 1
            await asyncio.sleep(1 / rate)  # the arrival schedule, not a wait for an outcome
            for task in tasks:  # a fault task that failed ends the run at once
                if task.done():
                    task.result()
        watcher.done_creating()
        finished = asyncio.create_task(watcher.all_final.wait())
        # Wake when every saga is final, or when a fault task fails (schedules end by
        # themselves; their result is checked then).
        pending = {finished, *tasks}
        deadline = t0 + budget
        while not finished.done() and time.monotonic() < deadline:
            done, pending = await asyncio.wait(
                pending, timeout=deadline - time.monotonic(), return_when="FIRST_COMPLETED"
            )
            for task in done:
                task.result()
        finished.cancel()
        await injector.stop()
        stale = set(injector.stale)

        def all_stale_seen(got: list[tuple[bytes, str]]) -> bool:
            return stale <= {dead_letter_key(body) for body, _ in got}

        dead = await collect_dead_letters(
            platform.amqp_url, settings.dead_letter_queue, all_stale_seen, DEAD_LETTER_WAIT_S
        )
        await chaos.finish()
    finally:
        chaos.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await injector.stop()
        await chaos.kill_all()
        for proxy in (api_proxy, broker_proxy):
            if proxy is not None:
                await proxy.close()

    figures.seconds = time.monotonic() - t0
    figures.label_patches, figures.label_patch_errors = patches["patches"], patches["errors"]
    figures.duplicates_injected = injector.duplicates
    figures.stale_injected = len(stale)
    figures.injections_failed = injector.failed
    figures.dead_letters = len(dead)
    dead_keys = {dead_letter_key(body) for body, _ in dead}
    figures.stale_dead_lettered = len(stale & dead_keys)
    figures.dead_letter_reasons = Counter(reason_kind(r) for _, r in dead)
    statuses: dict[str, SagaStatus | None] = {
        n: parse_status((watcher.objects.get(n) or {}).get("status")) for n in names
    }
    not_final = sorted(n for n in names if watcher.phase(n) not in FINAL)
    figures.stuck = len(not_final)
    result = audit(specs, statuses, expected, load_ledger(ledger))
    figures.handler_reruns = result.duplicate_runs
    broken = {v.split("/")[0].split(":")[0] for v in result.violations}
    figures.lost = len(broken - set(not_final))
    lines = [f"[{scenario.name}] seed={seed}", *figures.lines(), *window_lines(timeline)]
    request.config.stash.setdefault(FIGURES, []).extend(lines)
    print("\n".join(f"chaos: {line}" for line in lines), file=sys.stderr)

    assert not not_final, f"stuck (not final after {budget:.0f}s): " + ", ".join(
        f"{n}={watcher.phase(n)}" for n in not_final[:20]
    )
    assert not result.violations, f"{len(result.violations)} violations:\n" + "\n".join(
        result.violations[:40]
    )
    missing = stale - dead_keys
    assert not missing, f"{len(missing)} stale results not dead-lettered: {sorted(missing)[:5]}"
    assert not [r for _, r in dead if not r], "dead letters without a reason"
    assert not [r for _, r in dead if r.startswith("malformed")], figures.dead_letter_reasons
    return figures


async def _broker_restarts(chaos: Chaos, window: float) -> None:
    for fraction in [0.3, 0.7] if window >= 20 else [0.5]:
        if not await chaos.at(fraction):
            return
        await chaos.restart("broker")
