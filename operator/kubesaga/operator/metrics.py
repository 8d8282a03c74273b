"""Prometheus metrics of one operator process, and their ``/metrics`` view."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _PhaseCollector(Collector):
    def __init__(
        self, phases: Callable[[], Iterable[str]], past_deadline: Callable[[], int]
    ) -> None:
        self.phases = phases
        self.past_deadline = past_deadline

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kubesaga_sagas", "Sagas this operator knows, by phase.", labels=["phase"]
        )
        for phase, count in sorted(Tally(self.phases()).items()):
            family.add_metric([phase], count)
        yield family
        yield GaugeMetricFamily(
            "kubesaga_sagas_past_deadline",
            "Sagas this operator knows that are not finished although their deadline passed.",
            value=self.past_deadline(),
        )


class Metrics:
    """A private registry, so several operators can run in one process (tests)."""

    def __init__(
        self,
        phases: Callable[[], Iterable[str]],
        past_deadline: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_PhaseCollector(phases, past_deadline))
        self.step_seconds = Histogram(
            "kubesaga_step_duration_seconds",
            "Time from dispatching a command to recording its result.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.status_writes = Counter(
            "kubesaga_status_writes", "Saga status writes.", registry=self.registry
        )
        self.events_posted = Counter(
            "kubesaga_events_posted",
            "Kubernetes Events created on Sagas (each an apiserver write, as a status write is).",
            registry=self.registry,
        )
        self.events_pending = Gauge(
            "kubesaga_events_pending",
            "Events decided but not posted yet (one task posts them; a backlog means the "
            "apiserver cannot keep up with KUBESAGA_EVENTS).",
            registry=self.registry,
        )
        self.conflicts = Counter(
            "kubesaga_status_conflicts",
            "Status writes refused with 409 Conflict (re-read and re-decided).",
            registry=self.registry,
        )
        self.results = Counter(
            "kubesaga_results", "Results received, by verdict.", ["verdict"], registry=self.registry
        )
        self.commands = Counter(
            "kubesaga_commands_published", "Commands published.", ["kind"], registry=self.registry
        )
        self.dead_letters = Counter(
            "kubesaga_dead_letters",
            "Messages moved to the dead-letter queue.",
            ["queue"],
            registry=self.registry,
        )
        self.queue_mismatches = Counter(
            "kubesaga_queue_argument_mismatches",
            "Queues that exist with other arguments than kubesaga declares (used as they are).",
            ["queue", "argument"],
            registry=self.registry,
        )

        self.shards_owned = Gauge(
            "kubesaga_shards_owned",
            "Shards this replica holds the Lease of, decides the sagas of and consumes the "
            "results queue of (KUBESAGA_SHARDS).",
            registry=self.registry,
        )
        self.shard_rebalances = Counter(
            "kubesaga_shard_rebalances",
            "Shards this replica gained or lost (rebalancing, a replica that died or joined).",
            ["change"],
            registry=self.registry,
        )
        self.lease_renew_failures = Counter(
            "kubesaga_shard_lease_renew_failures",
            "Rounds in which the shard Leases could not be read or written, and shard Leases "
            "found taken by another replica on renewal.",
            registry=self.registry,
        )
        self.watch_events = Counter(
            "kubesaga_watch_events",
            "Saga watch events received, by watch: shard (the owned shards' watches, filtered "
            "by the apiserver on the kubesaga.io/shard-key label) or catchall (kopf's watch of "
            "the sagas without a valid label, received by every replica).",
            ["watch"],
            registry=self.registry,
        )
        self.unowned_decisions = Counter(
            "kubesaga_unowned_decisions",
            "Sagas decided although another replica owns their shard: results that arrived on "
            "the shared results queue (commands without reply_to) or were in flight when the "
            "shard was lost. Zero in a steady state with reply_to.",
            registry=self.registry,
        )

    def dead_lettered(self, queue: str, reason: str) -> None:
        self.dead_letters.labels(queue=queue).inc()

    def queue_mismatch(self, queue: str, argument: str) -> None:
        self.queue_mismatches.labels(queue=queue, argument=argument).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_route(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``/metrics`` view, served beside the probes (``kubesaga.health.serve``)."""

    async def view(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    return view
