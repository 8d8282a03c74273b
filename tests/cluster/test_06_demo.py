"""``kubesaga demo --cluster`` on the running node: the example as pods, the live view's summary.

The demo installs its own release (``kubesaga`` in namespace kubesaga-demo, an operator serving
only that namespace) and, with ``--keep``, leaves it for this test to look at and then remove.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.cluster.kube import RELEASE, REPO_ROOT, Cluster

NAMESPACE = "kubesaga-demo"
DEMO_TIMEOUT_S = 900


@pytest.fixture
def demo_namespace(cluster: Cluster) -> Iterator[str]:
    """The demo's namespace, removed with its release afterwards (``--keep`` leaves both)."""
    if not cluster.ours:
        pytest.skip("KUBESAGA_USE_EXISTING=1: demo --cluster runs on hack/cluster.sh's node only")
    yield NAMESPACE
    cluster.run(
        "helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--ignore-not-found", check=False
    )
    cluster.kubectl(
        "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=300
    )


@pytest.mark.timeout(DEMO_TIMEOUT_S + 60)
def test_demo_cluster_runs_the_example_through_pods(cluster: Cluster, demo_namespace: str) -> None:
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubesaga",
            "demo",
            "--cluster",
            "-e",
            "01",
            "--keep",
            "-n",
            demo_namespace,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert "every saga ended as expected" in demo.stdout, output
    rows = [line.split() for line in demo.stdout.splitlines() if "01-order-saga" in line]
    summary = rows[-1]
    assert summary[2:5] == ["Completed", "ok", "3/3"], output

    # --keep: the release, its pods and the saga are still there, as the instructions say.
    assert f"kubectl get pods -n {demo_namespace}" in demo.stdout
    pods = cluster.get_json("pods", "-n", demo_namespace)["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    saga = cluster.get_json("sagas", "-n", demo_namespace)["items"]
    assert [s["status"]["phase"] for s in saga] == ["Completed"]
