"""The probes on a real kubelet: a broker outage makes pods unready (not restarted), a wedged
operator is restarted by its liveness probe."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.cluster.kube import RELEASE, Cluster

OPERATOR = "app.kubernetes.io/component=operator"
WORKERS = "app.kubernetes.io/component=worker"


def _restarts(cluster: Cluster, namespace: str, selector: str) -> dict[str, int]:
    pods = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return {
        p["metadata"]["name"]: sum(s["restartCount"] for s in p["status"]["containerStatuses"])
        for p in pods
    }


def test_a_broker_outage_makes_pods_unready_and_they_recover(
    cluster: Cluster, release: str
) -> None:
    before = _restarts(cluster, release, f"app.kubernetes.io/instance={RELEASE}")
    cluster.kubectl("scale", "-n", "rabbitmq", "deployment/rabbitmq", "--replicas=0")
    try:
        cluster.kubectl("wait", "--for=delete", "pods", "-n", "rabbitmq", "--all", "--timeout=60s")
        for selector in (OPERATOR, WORKERS):
            cluster.kubectl(
                "wait",
                "-n",
                release,
                "pods",
                "-l",
                selector,
                "--for=condition=Ready=false",
                "--timeout=60s",
            )
    finally:
        cluster.kubectl("scale", "-n", "rabbitmq", "deployment/rabbitmq", "--replicas=1")
    cluster.kubectl("rollout", "status", "-n", "rabbitmq", "deployment/rabbitmq", "--timeout=120s")
    for selector in (OPERATOR, WORKERS):
        cluster.kubectl(
            "wait", "-n", release, "pods", "-l", selector, "--for=condition=Ready", "--timeout=120s"
        )
    # Unready, never restarted: a broker outage is not the pod's fault.
    assert _restarts(cluster, release, f"app.kubernetes.io/instance={RELEASE}") == before


def _host_pid_of_operator(pod: str) -> int:
    """The operator's process as the host sees it: `kubesaga operator` with the pod's name."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"KUBESAGA_POD_NAME={pod}".encode() in environ and b"operator" in cmdline:
            found.append(int(proc.name))
    assert len(found) == 1, f"expected one operator process, found {found}"
    return found[0]


def test_a_wedged_operator_is_restarted_by_its_liveness_probe(
    cluster: Cluster, release: str
) -> None:
    if not cluster.ours:
        pytest.skip("freezing a process needs the node's host (hack/cluster.sh)")
    ((pod, restarts),) = _restarts(cluster, release, OPERATOR).items()
    pid = _host_pid_of_operator(pod)
    os.kill(pid, signal.SIGSTOP)  # wedged: its event loop, HTTP server and watch all stop
    try:
        cluster.kubectl(
            "wait",
            "-n",
            release,
            f"pod/{pod}",
            f"--for=jsonpath={{.status.containerStatuses[0].restartCount}}={restarts + 1}",
            "--timeout=120s",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):  # the kubelet killed it, as it should
            os.kill(pid, signal.SIGCONT)
    cluster.kubectl("wait", "-n", release, f"pod/{pod}", "--for=condition=Ready", "--timeout=120s")
