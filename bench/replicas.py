"""Several operator replicas for the e2e phase (``--replicas N``), optionally CPU-capped.

Each replica is a ``kubesaga operator`` process with its own metrics port; all share the
phase's namespace, where their shard Leases live. The run starts once the Leases are split
fairly (watched, not polled), so the figures are steady-state ones, not a rebalance. With
``--operator-cpu C`` every replica is put in a cgroup (v1, ``/sys/fs/cgroup/cpu``) of its own
with ``cpu.cfs_quota_us = C x cpu.cfs_period_us``: on a small shared machine this makes the
operator the bottleneck, so adding replicas shows what sharding buys.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from bench.procs import PhaseConfig, Proc, free_port, start_operator
from bench.procstat import cpu_seconds
from bench.report import metric_sum
from kubesaga.operator.leases import LABEL_KIND, LABEL_SET, LABEL_SHARD
from kubesaga.operator.shards import SHARD_LEASE, fair_shares
from kubesaga.settings import default_of
from kubesaga.store import watching

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
SPLIT_TIMEOUT_S = 120.0

Metrics = dict[str, dict[tuple[tuple[str, str], ...], float]]


class CpuCap:
    """A cgroup v1 CPU quota for one process: created, joined, removed."""

    def __init__(self, name: str, cores: float) -> None:
        self.path = CGROUP_CPU / name
        self.cores = cores

    def apply(self, pid: int) -> None:
        if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
            raise RuntimeError(f"no cgroup v1 cpu controller at {CGROUP_CPU}: --operator-cpu")
        self.path.mkdir(exist_ok=True)
        period = int((self.path / "cpu.cfs_period_us").read_text())
        (self.path / "cpu.cfs_quota_us").write_text(str(max(1000, int(self.cores * period))))
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Once its process exited (an empty group only can be removed)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


@dataclass
class Replica:
    proc: Proc
    port: int
    cap: CpuCap | None = None
    cpu_before: float = 0.0


async def start(cfg: PhaseConfig, count: int, cpu: float | None, run_id: str) -> list[Replica]:
    replicas = []
    for index in range(count):
        port = cfg.metrics_port if index == 0 else free_port()
        proc = await start_operator(cfg, metrics_port=port, name=f"operator-{index}")
        cap = CpuCap(f"kubesaga-bench-{run_id}-{index}", cpu) if cpu else None
        if cap is not None:
            cap.apply(proc.pid)
        replicas.append(Replica(proc, port, cap))
    return replicas


async def stop(replicas: list[Replica]) -> None:
    for replica in replicas:
        await replica.proc.stop()
        if replica.cap is not None:
            replica.cap.remove()


async def wait_fair_split(api: client.ApiClient, namespace: str, count: int) -> dict[str, int]:
    """Watch the shard Leases until ``count`` holders hold all shards in fair shares."""
    shards = int(default_of("shards"))
    holders: dict[int, str] = {}

    def see(kind: str, lease: Any) -> dict[str, int] | None:
        labels = lease.metadata.labels or {}
        if labels.get(LABEL_KIND) != SHARD_LEASE:
            return None
        holder = lease.spec.holder_identity if lease.spec else None
        shard = int(labels[LABEL_SHARD])
        if kind == "DELETED" or not holder:
            holders.pop(shard, None)
        else:
            holders[shard] = holder
        counts = Counter(holders.values())
        want = sorted(fair_shares(shards, [str(i) for i in range(count)]).values())
        if len(holders) == shards and sorted(counts.values()) == want:
            return dict(counts)
        return None

    async with asyncio.timeout(SPLIT_TIMEOUT_S):
        return await watching.watch_until(
            client.CoordinationV1Api(api).list_namespaced_lease,
            namespace,
            check=see,
            label_selector=f"{LABEL_SET}={default_of('shard_lease_prefix')}",
        )


def merged(scrapes: list[Metrics]) -> Metrics:
    """The replicas' metrics summed sample by sample, as if one operator had them all."""
    total: Metrics = {}
    for scrape in scrapes:
        for name, samples in scrape.items():
            into = total.setdefault(name, {})
            for labels, value in samples.items():
                into[labels] = into.get(labels, 0.0) + value
    return total


def mark_cpu(replicas: list[Replica]) -> None:
    for replica in replicas:
        replica.cpu_before = cpu_seconds(replica.proc.pid) or 0.0


def shares(
    replicas: list[Replica], before: list[Metrics], after: list[Metrics]
) -> list[dict[str, Any]]:
    """Each replica's part of the work: steps applied, 409s, shards and CPU per step."""

    def delta(i: int, name: str, **labels: str) -> float:
        return metric_sum(after[i], name, **labels) - metric_sum(before[i], name, **labels)

    rows: list[dict[str, Any]] = []
    total = sum(delta(i, "kubesaga_results_total", verdict="applied") for i in range(len(after)))
    for i, replica in enumerate(replicas):
        applied = delta(i, "kubesaga_results_total", verdict="applied")
        cpu_s = (cpu_seconds(replica.proc.pid) or replica.cpu_before) - replica.cpu_before
        rows.append(
            {
                "pid": replica.proc.pid,
                "shards": metric_sum(after[i], "kubesaga_shards_owned"),
                "steps": applied,
                "share": round(applied / total, 3) if total else 0.0,
                "conflicts_409": delta(i, "kubesaga_status_conflicts_total"),
                "unowned_decisions": delta(i, "kubesaga_unowned_decisions_total"),
                "cpu_s": round(cpu_s, 2),
                "cpu_ms_per_step": round(1000 * cpu_s / applied, 2) if applied else None,
            }
        )
    return rows


def share_text(rows: list[Mapping[str, Any]]) -> str:
    return " ".join(
        f"{int(r['shards'])}sh/{100 * r['share']:.0f}%/{r['cpu_ms_per_step']}ms" for r in rows
    )
