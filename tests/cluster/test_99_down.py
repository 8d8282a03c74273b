"""``hack/cluster.sh down`` leaves the host as ``up`` found it.

Compared against a record taken by this test session before ``up`` (when the session started the
node) or, on a reused node, around a ``down``/``up``/``down`` cycle of its own: sysctls, iptables
chains and rules (both families), mounts, cgroups and network links — and no process of the node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.kube import Cluster, cluster_sh, host_state


def _node_processes() -> list[str]:
    """Processes of the node: in a pod's cgroup, or started with the node's state or run dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroups = (proc / "cgroup").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if (
            "/kubepods" in cgroups
            or "/kubesaga/cluster" in cmdline
            or "kubesaga-cluster" in cmdline
        ):
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def test_down_restores_the_host(cluster: Cluster, host_record: Path | None, tmp_path: Path) -> None:
    if not cluster.ours:
        pytest.skip("KUBESAGA_USE_EXISTING=1: the cluster and its host are not hack/cluster.sh's")
    record = host_record
    if record is None:
        # A node someone else started: record the host around a cycle of our own.
        assert cluster_sh("down", timeout=300, capture=False).returncode == 0
        record = tmp_path / "host-before.json"
        assert host_state("save", record).returncode == 0
        assert cluster_sh("up", timeout=1800).returncode == 0
    down = cluster_sh("down", timeout=300, capture=False)
    assert down.returncode == 0, "hack/cluster.sh down failed (its output is above)"
    diff = host_state("diff", record)
    assert diff.returncode == 0, f"the host differs from before `up`:\n{diff.stdout}"
    assert _node_processes() == []
    assert cluster_sh("status", timeout=60).returncode == 3
