"""``helm test``: the chart's own test hook passes on the installed release."""

from __future__ import annotations

from tests.cluster.kube import RELEASE, Cluster


def test_helm_test_passes(cluster: Cluster, release: str) -> None:
    out = cluster.helm("test", RELEASE, "--namespace", release, "--timeout", "3m", "--logs")
    assert "Phase:          Succeeded" in out or "Phase: Succeeded" in out.replace("  ", " "), out
