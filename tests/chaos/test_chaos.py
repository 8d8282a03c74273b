"""Fault injection: a mix of sagas runs while everything around them keeps failing.

While sagas are created at a steady rate and run to their end:
- two operator replicas run at once; one of them is SIGKILLed every few seconds and restarted;
- RabbitMQ is restarted in place (``hack/testenv.sh restart-broker``) once or twice;
- worker processes are SIGKILLed (mostly mid-step) and restarted;
- copies of the results workers send are re-published (exact duplicates, and stale copies with a
  wrong dispatch id or attempt), early or late;
- another client keeps patching the Sagas' labels, so status writes meet 409 Conflicts.

The handlers keep a ledger (tests/chaos/chaos_worker.py). At the end, by one watch over the
namespace: every saga is in its expected final phase within a bounded time, and the ledger shows
no forward step dispatched after compensation began, compensations in reverse dependency order,
and each succeeded step (with a compensation) undone exactly once in net effect.

The fault *schedule* uses timers (that is the scenario); every wait for an outcome is on a watch,
a consumer or a process's log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from kubesaga.broker import EXCHANGE
from kubesaga.client import AsyncSagaClient
from kubesaga.models import API_GROUP, API_VERSION, PLURAL, SagaSpec, SagaStatus, parse_status
from kubesaga.settings import Settings
from kubesaga.store import watching
from tests.chaos.audit import audit, load_ledger, open_runs
from tests.chaos.conftest import FIGURES, chaos_time_budget
from tests.chaos.procs import REPO_ROOT, Proc, operator_proc, scrape, worker_proc
from tests.integration.harness import free_port

pytestmark = [pytest.mark.chaos, pytest.mark.usefixtures("saga_crd")]

TESTENV = REPO_ROOT / "hack" / "testenv.sh"
FINAL = ("Completed", "Compensated", "Failed")
OPERATOR_KILL_EVERY_S = 4.0
WORKER_KILL_EVERY_S = 3.0
LABEL_PATCH_EVERY_S = 0.1
WORKERS = 3
WORKER_CONCURRENCY = 8
REDELIVER_AFTER_S = 5.0
DUPLICATE_P = 0.3
STALE_P = 0.15
INJECT_DELAY_MAX_S = 3.0
DEAD_LETTER_WAIT_S = 60.0

EXPECTED = {
    "ok": "Completed",
    "fail": "Compensated",
    "retry": "Completed",
    "dag-ok": "Completed",
    "dag-fail": "Compensated",
}
KINDS = tuple(EXPECTED)


def saga_steps(kind: str, prefix: str, rng: random.Random) -> list[dict[str, Any]]:
    """The steps of one saga of ``kind``; sleeps are random so kills land mid-step."""
    policy = {"maxAttempts": 3, "backoffSeconds": 0.2, "backoffFactor": 1.0}

    def step(name: str, **kw: Any) -> dict[str, Any]:
        spec_keys = {"dependsOn"}
        entry: dict[str, Any] = {
            "name": name,
            "action": f"{prefix}.do",
            "compensation": f"{prefix}.undo",
            "retry": policy,
            "compensationRetry": policy,
            "input": {
                "sleep": round(rng.uniform(0.05, 0.6), 3),
                "undo_sleep": round(rng.uniform(0.05, 0.3), 3),
                **{k: v for k, v in kw.items() if k not in spec_keys},
            },
        }
        entry.update({k: v for k, v in kw.items() if k in spec_keys})
        return entry

    if kind == "ok":
        return [step("a"), step("b"), step("c")]
    if kind == "fail":
        return [step("a", undo_flaky=True), step("b"), step("c", fail="permanent")]
    if kind == "retry":
        return [step("a"), step("b", fail="retryable-once"), step("c")]
    if kind == "dag-ok":
        return [
            step("a"),
            step("b", dependsOn=["a"]),
            step("c", dependsOn=["a"]),
            step("d", dependsOn=["b", "c"]),
        ]
    assert kind == "dag-fail"
    return [
        step("a"),
        step("b", dependsOn=["a"], sleep=round(rng.uniform(0.5, 1.0), 3)),
        step("c", dependsOn=["a"], sleep=0.05, fail="permanent"),
        step("d", dependsOn=["b", "c"]),
    ]


@dataclass
class Figures:
    sagas: int = 0
    operator_kills: int = 0
    operator_restarts: int = 0
    worker_kills: int = 0
    worker_kills_mid_step: int = 0
    worker_restarts: int = 0
    broker_restarts: int = 0
    duplicates_injected: int = 0
    stale_injected: int = 0
    injections_failed: int = 0
    label_patches: int = 0
    label_patch_errors: int = 0
    conflicts_409: int = 0
    status_writes: int = 0
    dead_letters: int = 0
    stale_dead_lettered: int = 0
    handler_reruns: int = 0
    lost: int = 0
    stuck: int = 0
    seconds: float = 0.0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        head = (
            f"sagas={self.sagas} kills={self.operator_kills} "
            f"restarts={self.operator_restarts + self.worker_restarts} "
            f"broker_restarts={self.broker_restarts} "
            f"duplicates_injected={self.duplicates_injected} "
            f"stale_injected={self.stale_injected} label_patches={self.label_patches} "
            f"lost={self.lost} stuck={self.stuck} seconds={self.seconds:.1f}"
        )
        detail = (
            f"operator kills={self.operator_kills} restarts={self.operator_restarts}; "
            f"worker kills={self.worker_kills} (mid-step {self.worker_kills_mid_step}) "
            f"restarts={self.worker_restarts}; handler re-runs of a dispatch id="
            f"{self.handler_reruns}; injections failed (broker down)={self.injections_failed}; "
            f"label patch errors={self.label_patch_errors}; 409 conflicts={self.conflicts_409}; "
            f"status writes={self.status_writes}; dead letters={self.dead_letters} "
            f"(stale injected and dead-lettered {self.stale_dead_lettered})"
        )
        reasons = ", ".join(f"{k}: {v}" for k, v in self.dead_letter_reasons.most_common())
        return [head, detail, f"dead-letter reasons: {reasons or 'none'}"]


def reason_kind(reason: str) -> str:
    for prefix in ("stale or unknown dispatch id", "malformed message", "saga ", "no "):
        if reason.startswith(prefix):
            return prefix.strip()
    return reason[:60]


class NamespaceWatch:
    """One watch over the namespace: the newest copy of every Saga, and when all are final."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api = k8s.CustomObjectsApi(api)
        self.namespace = namespace
        self.objects: dict[str, Mapping[str, Any]] = {}
        self.expected: set[str] = set()
        self.creating = True
        self.all_final = asyncio.Event()

    def phase(self, name: str) -> str | None:
        obj = self.objects.get(name)
        status = (obj or {}).get("status") or {}
        phase = status.get("phase")
        return str(phase) if phase else None

    def _check(self) -> None:
        if not self.creating and all(self.phase(n) in FINAL for n in self.expected):
            self.all_final.set()

    def done_creating(self) -> None:
        self.creating = False
        self._check()

    def _observe(self, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"]["name"]
        known = self.objects.get(name)
        rv = int(obj["metadata"]["resourceVersion"])
        if known is None or int(known["metadata"]["resourceVersion"]) < rv:
            self.objects[name] = obj
        if self.phase(name) in FINAL:
            self._check()

    async def run(self) -> None:
        """Follow every saga of the namespace (``store.watching``: re-lists after 410 Gone)."""
        async for kind, obj in watching.follow(
            self.api.list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            self.namespace,
            PLURAL,
            watch_timeout=120,
        ):
            if kind != "DELETED":
                self._observe(obj)


class Injector:
    """Taps the results exchange and re-publishes copies: exact duplicates and stale ones."""

    def __init__(self, amqp_url: str, results_queue: str, tap: str, rng: random.Random) -> None:
        self.amqp_url = amqp_url
        self.results_queue = results_queue
        self.tap = tap
        self.rng = rng
        self.stale: set[tuple[str, int]] = set()
        self.pending: set[asyncio.Task[None]] = set()
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.channel: aio_pika.abc.AbstractRobustChannel | None = None
        self.duplicates = 0
        self.failed = 0
        self.stopped = False

    async def start(self) -> None:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        consume = await self.connection.channel()
        exchange = await consume.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        # A copy of every result the workers publish (routing key = the results queue).
        queue = await consume.declare_queue(self.tap, durable=False, auto_delete=True)
        await queue.bind(exchange, routing_key=self.results_queue)
        await queue.consume(self._on_result)

    async def _on_result(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        if self.stopped:
            return
        draw = self.rng.random()
        delay = self.rng.uniform(0, INJECT_DELAY_MAX_S)
        if draw < DUPLICATE_P:
            self._later(delay, message.body, message.message_id, None)
        elif draw < DUPLICATE_P + STALE_P:
            body = json.loads(message.body)
            if self.rng.random() < 0.5:
                body["dispatchId"] = body["dispatchId"] + "-stale"
            else:
                body["attempt"] = int(body["attempt"]) + 1
            raw = json.dumps(body).encode()
            self._later(delay, raw, None, (body["dispatchId"], int(body["attempt"])))

    def _later(
        self, delay: float, body: bytes, message_id: str | None, stale: tuple[str, int] | None
    ) -> None:
        task = asyncio.create_task(self._publish(delay, body, message_id, stale))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _publish(
        self, delay: float, body: bytes, message_id: str | None, stale: tuple[str, int] | None
    ) -> None:
        await asyncio.sleep(delay)  # a late copy: part of the fault schedule
        assert self.channel is not None
        try:
            async with asyncio.timeout(5):
                # The default exchange: straight to the results queue, not back to the tap.
                await self.channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=message_id,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self.results_queue,
                    mandatory=True,
                )
        except Exception:
            self.failed += 1  # the broker is restarting: this copy was not injected
            return
        if stale is None:
            self.duplicates += 1
        else:
            self.stale.add(stale)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for task in list(self.pending):
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)
        if self.connection is not None:
            await self.connection.close()


async def collect_dead_letters(
    amqp_url: str, queue: str, until: Callable[[list[tuple[bytes, str]]], bool], timeout: float
) -> list[tuple[bytes, str]]:
    """Consume the dead-letter queue until ``until`` holds (or ``timeout``); body and reason."""
    got: list[tuple[bytes, str]] = []
    done = asyncio.Event()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            reason = (message.headers or {}).get("x-kubesaga-reason", "")
            got.append((message.body, str(reason)))
            if until(got):
                done.set()

        tag = await q.consume(on_message)
        if until(got):
            done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        await q.cancel(tag)
    return got


class Chaos:
    """The processes under test and the fault schedule."""

    def __init__(
        self, settings: Settings, prefix: str, ledger: Path, figures: Figures, rng: random.Random
    ) -> None:
        self.settings = settings
        self.figures = figures
        self.rng = rng
        self.lock = asyncio.Lock()
        """One fault at a time: nothing (re)starts while the broker is down."""
        self.ledger = ledger
        self.operators = [operator_proc(f"operator-{i}", settings, free_port()) for i in range(2)]
        self.workers = [
            worker_proc(f"worker-{i}", settings, prefix, ledger, WORKER_CONCURRENCY)
            for i in range(WORKERS)
        ]
        self.stop = asyncio.Event()

    def _port(self, proc: Proc) -> int:
        return int(proc.env["KUBESAGA_METRICS_PORT"])

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in [*self.operators, *self.workers]))

    async def _scrape_counts(self, proc: Proc) -> None:
        metrics = await scrape(self._port(proc))
        self.figures.conflicts_409 += int(metrics.get("kubesaga_status_conflicts_total", 0))
        self.figures.status_writes += int(metrics.get("kubesaga_status_writes_total", 0))

    async def every(self, period: float, action: Callable[[], Any]) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), period * self.rng.uniform(0.6, 1.4))
            if self.stop.is_set():
                return
            async with self.lock:
                await action()

    async def kill_operator(self) -> None:
        proc = self.operators[self.figures.operator_kills % len(self.operators)]
        await self._scrape_counts(proc)
        await proc.kill()
        self.figures.operator_kills += 1
        await proc.start()
        self.figures.operator_restarts += 1

    async def kill_worker(self) -> None:
        # Prefer a worker that is running a handler right now: the kill lands mid-step.
        busy = [p for p in self.workers if p.pid is not None and open_runs(self.ledger, p.pid)]
        proc = self.rng.choice(busy or self.workers)
        assert proc.pid is not None
        mid_step = open_runs(self.ledger, proc.pid)
        await proc.kill()
        self.figures.worker_kills += 1
        self.figures.worker_kills_mid_step += mid_step > 0
        await proc.start()
        self.figures.worker_restarts += 1

    async def restart_broker(self) -> None:
        async with self.lock:
            proc = await asyncio.create_subprocess_exec(
                str(TESTENV),
                "restart-broker",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, f"restart-broker failed: {err.decode()}"
            self.figures.broker_restarts += 1

    async def broker_schedule(self, at: list[float]) -> None:
        t0 = time.monotonic()
        for when in at:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, t0 + when - time.monotonic()))
            if self.stop.is_set():
                return
            await self.restart_broker()

    async def finish(self) -> None:
        """Stop the faults; scrape the live operators; stop everything gracefully."""
        self.stop.set()
        async with self.lock:
            for proc in self.operators:
                if proc.alive:
                    await self._scrape_counts(proc)
            await asyncio.gather(
                *(p.stop(grace=10) for p in [*self.workers, *self.operators]),
                return_exceptions=True,
            )

    async def kill_all(self) -> None:
        for proc in [*self.workers, *self.operators]:
            with contextlib.suppress(Exception):
                await proc.kill()


async def patch_labels(
    api: k8s.ApiClient, namespace: str, names: list[str], figures: Figures, stop: asyncio.Event
) -> None:
    """Another client touching the Sagas: label patches bump resourceVersion -> 409s."""
    custom: Any = k8s.CustomObjectsApi(api)
    rng = random.Random(7)
    n = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LABEL_PATCH_EVERY_S)
        if not names:
            continue
        n += 1
        try:
            await custom.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                rng.choice(names),
                {"metadata": {"labels": {"chaos.kubesaga.io/touched": str(n)}}},
                _content_type="application/merge-patch+json",
            )
            figures.label_patches += 1
        except ApiException:
            figures.label_patch_errors += 1


async def test_sagas_survive_chaos(
    api_client: k8s.ApiClient,
    kubeconfig: str,
    amqp_url: str,
    namespace: str,
    chaos_sagas: int,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    seed = int(os.environ.get("KUBESAGA_CHAOS_SEED", "0")) or random.randrange(1, 10**6)
    rng = random.Random(seed)
    prefix = f"c{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kubeconfig=kubeconfig,
        amqp_url=amqp_url,
        namespaces=[namespace],
        results_queue=f"{prefix}.results",
        dead_letter_queue=f"{prefix}.dead-letter",
        metrics_port=0,
        redeliver_after_seconds=REDELIVER_AFTER_S,
        events="phases",
    )
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    figures = Figures()
    figures_key = request.config.stash.setdefault(FIGURES, [])
    budget = chaos_time_budget(chaos_sagas)
    rate = max(1.5, chaos_sagas / 90)  # sagas created per second
    window = chaos_sagas / rate

    chaos = Chaos(settings, prefix, ledger, figures, rng)
    saga_client = AsyncSagaClient(api_client, namespace)
    watcher = NamespaceWatch(api_client, namespace)
    injector = Injector(amqp_url, settings.results_queue, f"{prefix}.tap", rng)
    specs: dict[str, SagaSpec] = {}
    expected: dict[str, str] = {}
    names: list[str] = []
    t0 = time.monotonic()
    tasks: list[asyncio.Task[Any]] = []
    try:
        await chaos.start()
        await injector.start()
        tasks = [
            asyncio.create_task(watcher.run()),
            asyncio.create_task(chaos.every(OPERATOR_KILL_EVERY_S, chaos.kill_operator)),
            asyncio.create_task(chaos.every(WORKER_KILL_EVERY_S, chaos.kill_worker)),
            asyncio.create_task(
                chaos.broker_schedule(
                    [window * 0.3, window * 0.7] if window >= 20 else [window / 2]
                )
            ),
            asyncio.create_task(patch_labels(api_client, namespace, names, figures, chaos.stop)),
        ]
        for i in range(chaos_sagas):
            kind = KINDS[i % len(KINDS)]
            name = f"s{i:04d}-{kind}"
            steps = saga_steps(kind, prefix, rng)
            saga = await saga_client.start(name, steps, {"run": prefix})
            specs[name] = saga.spec
            expected[name] = EXPECTED[kind]
            watcher.expected.add(name)
            names.append(name)
            figures.sagas += 1
            await asyncio.sleep(1 / rate)  # the arrival schedule, not a wait for an outcome
            for task in tasks:  # a fault task that failed ends the run at once
                if task.done():
                    task.result()
        watcher.done_creating()
        remaining = budget - (time.monotonic() - t0)
        finished = asyncio.create_task(watcher.all_final.wait())
        # Wake when every saga is final, or when a fault task fails (the broker schedule is
        # the only one that ends by itself).
        pending = {finished, *tasks}
        deadline = time.monotonic() + max(remaining, 30)
        while not finished.done() and time.monotonic() < deadline:
            done, pending = await asyncio.wait(
                pending, timeout=deadline - time.monotonic(), return_when="FIRST_COMPLETED"
            )
            for task in done:
                task.result()
        finished.cancel()
        # Every stale copy injected must come out on the dead-letter queue, with its reason.
        await injector.stop()
        stale = set(injector.stale)

        def all_stale_seen(got: list[tuple[bytes, str]]) -> bool:
            return stale <= {_key(body) for body, _ in got}

        dead = await collect_dead_letters(
            amqp_url, settings.dead_letter_queue, all_stale_seen, DEAD_LETTER_WAIT_S
        )
        await chaos.finish()
    finally:
        chaos.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await injector.stop()
        await chaos.kill_all()

    figures.seconds = time.monotonic() - t0
    figures.duplicates_injected = injector.duplicates
    figures.stale_injected = len(stale)
    figures.injections_failed = injector.failed
    figures.dead_letters = len(dead)
    dead_keys = {_key(body) for body, _ in dead}
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
    lines = [f"seed={seed}", *figures.lines()]
    figures_key.extend(lines)
    print("\n".join(f"chaos: {line}" for line in lines), file=sys.stderr)

    assert not not_final, f"stuck (not final after {budget:.0f}s): " + ", ".join(
        f"{n}={watcher.phase(n)}" for n in not_final[:20]
    )
    assert not result.violations, f"{len(result.violations)} violations:\n" + "\n".join(
        result.violations[:40]
    )
    missing = stale - dead_keys
    assert not missing, f"{len(missing)} stale results not dead-lettered: {sorted(missing)[:5]}"
    bad = [r for _, r in dead if not r]
    assert not bad, "dead letters without a reason"
    assert not [r for _, r in dead if r.startswith("malformed")], figures.dead_letter_reasons
    assert figures.operator_kills >= 1 and figures.worker_kills >= 1
    assert figures.broker_restarts >= 1 and figures.label_patches >= 1


def _key(body: bytes) -> tuple[str, int]:
    try:
        data = json.loads(body)
        return str(data.get("dispatchId")), int(data.get("attempt", 0))
    except (ValueError, TypeError, AttributeError):
        return "", 0
