"""Running the operator: connect, consume results, watch Sagas, serve metrics and probes."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import kopf
from kubernetes_asyncio.client import ApiClient

from kubesaga.broker import Broker, BrokerSettings
from kubesaga.health import Health, serve
from kubesaga.operator.cache import SagaCache
from kubesaga.operator.events import EventPoster
from kubesaga.operator.handlers import build_registry
from kubesaga.operator.kopf_tasks import NotKopf
from kubesaga.operator.leases import LeaseStore
from kubesaga.operator.metrics import Metrics, metrics_route
from kubesaga.operator.orchestrator import Orchestrator
from kubesaga.operator.probes import operator_health
from kubesaga.operator.scope import only_watched
from kubesaga.operator.shard_watch import ShardWatches
from kubesaga.operator.shard_work import ShardedPublisher, ShardRouter, ShardWork
from kubesaga.operator.sharding import ShardManager
from kubesaga.settings import Settings
from kubesaga.store import SagaStore, make_api_client

log = logging.getLogger("kubesaga.operator")


async def run_operator(
    settings: Settings,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    signals: Callable[[], None] | None = None,
) -> None:
    """Run until ``stop`` is set (or forever). ``ready`` is set once the watch is running.

    kopf installs SIGTERM/SIGINT handlers of its own when it starts in the main thread (a second
    signal makes them fail); ``signals`` is called right after, to put the caller's back.
    """
    api = await make_api_client(settings.kubeconfig, settings.kube_request_timeout_seconds)
    orchestrator: Orchestrator | None = None
    manager: ShardManager | None = None
    work: ShardWork | None = None
    watch_api: ApiClient | None = None
    events = EventPoster(api, settings.events)
    metrics_runner = None
    health: Health | None = None
    ready_flag = ready or asyncio.Event()
    try:
        cache = SagaCache()
        metrics = Metrics(cache.phases, lambda: cache.past_deadline(datetime.now(UTC)))
        events.on_posted = metrics.events_posted.inc
        metrics.events_pending.set_function(events.queue.qsize)
        broker = await Broker.connect(
            BrokerSettings.from_settings(settings),
            on_dead_letter=metrics.dead_lettered,
            on_queue_mismatch=metrics.queue_mismatch,
        )
        router = ShardRouter(settings.shards, settings.results_queue)
        for queue in router.queues():  # workers publish to them before anyone consumes
            await broker.declare_results_queue(queue)
        rejected = metrics.results.labels(verdict="rejected").inc
        work = ShardWork(
            broker,
            router,
            lambda: manager.owned if manager is not None else (),
            lambda result: on_result(result),
        )
        store = SagaStore(api)
        orchestrator = Orchestrator(
            store,
            ShardedPublisher(broker, router),
            metrics=metrics,
            events=events,
            redeliver_after=settings.redeliver_after_seconds,
            cache=cache,
            owns=work.owns,
        )
        work.orchestrator = orchestrator
        watch_api = await make_api_client(  # watches hold a connection each: their own pool
            settings.kubeconfig, settings.kube_request_timeout_seconds
        )
        work.watches = ShardWatches(
            watch_api,
            store,
            orchestrator,
            settings.shards,
            router.of,
            settings.namespaces,
            metrics,
            settings.kube_watch_idle_seconds,
        )
        on_result = only_watched(orchestrator.on_result, settings.namespaces, rejected)
        health = operator_health(api, broker, ready_flag)
        health.start()
        if settings.metrics_port:
            metrics_runner = await serve(
                health,
                settings.metrics_host,
                settings.metrics_port,
                {"/metrics": metrics_route(metrics)},
            )
        events.start()
        await broker.consume_results(on_result)  # results of commands without reply_to
        manager = ShardManager(
            LeaseStore(api, settings.pod_namespace, settings.shard_lease_prefix),
            lease_identity(settings),
            settings.shards,
            settings.shard_lease_seconds,
            settings.shard_renew_seconds,
            work.gained,
            work.lost,
            metrics,
        )
        manager.start()
        announce = asyncio.create_task(_announce_ready(ready_flag))
        existing = set(asyncio.all_tasks())
        tasks = await kopf.spawn_tasks(  # kopf.operator() is spawn_tasks + run_tasks
            registry=build_registry(
                orchestrator,
                namespaced=bool(settings.namespaces),
                kubeconfig=settings.kubeconfig,
                request_timeout=settings.kube_request_timeout_seconds,
                watch_idle=settings.kube_watch_idle_seconds,
            ),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready_flag,
            # kopf's Identity is a NewType of str that kopf does not export.
            identity=operator_identity(settings),  # type: ignore[arg-type]
        )
        if signals is not None:
            signals()
        await kopf.run_tasks(tasks, ignored=NotKopf(existing))
    finally:
        if "announce" in locals():
            announce.cancel()
        if manager is not None:
            await manager.close()
        if work is not None and work.watches is not None:
            await work.watches.close()
        if watch_api is not None:
            await watch_api.close()
        if orchestrator is not None:
            await orchestrator.close()
            await broker.close()
        await events.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if health is not None:
            await health.close()
        await api.close()


def operator_identity(settings: Settings) -> str:
    """The id kopf knows this operator by: the pod's name, else the host name.

    Given explicitly because kopf's default calls ``getpass.getuser()``, which raises for a UID
    with no passwd entry (``runAsUser`` of any number, as Pod Security "restricted" encourages).
    """
    return settings.pod_name or socket.gethostname()


def lease_identity(settings: Settings) -> str:
    """This replica's name on the shard Leases: the pod's name (a restarted container keeps
    its shards), else host, process id and a random part (several operators in one process,
    as tests run them, must differ too)."""
    return settings.pod_name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


READY_LINE = "kubesaga operator ready"


async def _announce_ready(ready: asyncio.Event) -> None:
    """Log one line once the watch runs; process supervisors and tests wait for it."""
    await ready.wait()
    log.warning(READY_LINE)
