"""The cluster tier: kubesaga installed with Helm on a real one-node cluster (``hack/cluster.sh``).

Fixtures:
    cluster      -> Cluster: the running node (started by ``hack/cluster.sh up`` unless one runs;
                    then stopped at the end of the session), with the kubesaga images rebuilt from
                    this checkout and imported
    host_record  -> Path of the host's state recorded before this session's ``up`` (or None)
    release      -> str: the namespace (Pod Security ``restricted``, enforced) in which the chart
                    is installed with the examples' workers, once per session

The tests in this folder run in file order and share one release: install, examples, resilience,
``helm test``, uninstall, ``kubesaga demo --cluster`` (its own release), and last ``down`` with
the host check (``test_99_down.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.kube import (
    CHART,
    RELEASE,
    WORKERS_VALUES,
    Cluster,
    CommandFailed,
    cluster_sh,
    host_state,
    parse_exports,
)

# A first run builds kubelet & co. from the Go module proxy and the images (~15 min on 2 cores).
UP_TIMEOUT_S = 2400.0
DOWN_TIMEOUT_S = 300.0
NAMESPACE = "kubesaga-e2e"
TEST_TIMEOUT_S = 600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Pods start in seconds but a Helm install waits for all of them: 10 minutes per test."""
    for item in items:
        if item.get_closest_marker("cluster") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


def diagnose(cluster: Cluster, namespace: str) -> str:
    """Pods, recent Events and the logs of unready pods: what a failed install needs explained."""
    parts = [cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False)]
    parts.append(
        cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)[
            -3000:
        ]
    )
    pods = cluster.get_json("pods", "-n", namespace)["items"]
    for pod in pods:
        statuses = pod["status"].get("containerStatuses") or []
        if not all(s.get("ready") for s in statuses):
            name = pod["metadata"]["name"]
            logs = cluster.kubectl("logs", "-n", namespace, name, "--tail=40", check=False)
            previous = cluster.kubectl(
                "logs", "-n", namespace, name, "--previous", "--tail=40", check=False
            )
            parts.append(f"--- {name}\n{logs}\n--- {name} (previous)\n{previous}")
    return "\n".join(parts)


def _existing_cluster() -> Cluster | None:
    """``KUBESAGA_USE_EXISTING=1`` with KUBECONFIG and KUBESAGA_CLUSTER_AMQP_URL: a cluster someone
    else runs (kind, through ``hack/e2e-kind.sh``), with the images already loaded."""
    if os.environ.get("KUBESAGA_USE_EXISTING") != "1":
        return None
    missing = [v for v in ("KUBECONFIG", "KUBESAGA_CLUSTER_AMQP_URL") if not os.environ.get(v)]
    if missing:
        pytest.fail(
            f"KUBESAGA_USE_EXISTING=1 needs {' and '.join(missing)} for the cluster tier",
            pytrace=False,
        )
    env = dict(os.environ)
    return Cluster(
        env=env, amqp_url=env["KUBESAGA_CLUSTER_AMQP_URL"], started_here=False, ours=False
    )


@pytest.fixture(scope="session")
def _cluster_state() -> Iterator[tuple[Cluster, Path | None]]:
    existing = _existing_cluster()
    if existing is not None:
        yield existing, None
        return
    if os.geteuid() != 0:
        pytest.skip(
            "the cluster tier needs root (containerd, kubelet, iptables): run it as root, "
            "or leave it out with -m 'not cluster'"
        )
    with tempfile.TemporaryDirectory(prefix="kubesaga-cluster-test-") as tmp:
        record: Path | None = None
        running = cluster_sh("status", timeout=60).returncode == 0
        if not running:
            record = Path(tmp) / "host-before.json"
            saved = host_state("save", record)
            assert saved.returncode == 0, saved.stderr
        up = cluster_sh("up", timeout=UP_TIMEOUT_S)
        if up.returncode != 0:
            pytest.fail(
                f"`hack/cluster.sh up` failed (exit {up.returncode}); see its output above",
                pytrace=False,
            )
        env = parse_exports(up.stdout)
        if running:
            # Reusing a node: make sure its images are this checkout's.
            images = cluster_sh("images", timeout=UP_TIMEOUT_S, capture=False)
            assert images.returncode == 0, "hack/cluster.sh images failed"
        found = Cluster(
            env=env, amqp_url=env["KUBESAGA_CLUSTER_AMQP_URL"], started_here=not running
        )
        try:
            yield found, record
        finally:
            if found.started_here:
                cluster_sh("down", timeout=DOWN_TIMEOUT_S, capture=False)


@pytest.fixture(scope="session")
def cluster(_cluster_state: tuple[Cluster, Path | None]) -> Cluster:
    return _cluster_state[0]


@pytest.fixture(scope="session")
def host_record(_cluster_state: tuple[Cluster, Path | None]) -> Path | None:
    return _cluster_state[1]


@pytest.fixture(scope="session")
def release(cluster: Cluster) -> str:
    """The chart with the examples' workers in a Pod Security ``restricted`` namespace."""
    existing = cluster.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name")
    if existing.strip():
        cluster.run("helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=300)
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "label",
        "namespace",
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    try:
        cluster.helm(
            "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "-f", str(WORKERS_VALUES), "--set", f"amqp.url={cluster.amqp_url}",
            "--wait", "--timeout", "4m",
        )  # fmt: skip
    except CommandFailed as error:
        raise CommandFailed(f"{error}\n{diagnose(cluster, NAMESPACE)}") from None
    return NAMESPACE
