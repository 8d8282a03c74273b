"""``helm uninstall`` leaves no pods, Services or RBAC objects behind; the CRD stays (crds/)."""

from __future__ import annotations

from tests.cluster.kube import RELEASE, Cluster

KINDS = (
    "pods,services,deployments,replicasets,serviceaccounts,secrets,configmaps,roles,rolebindings"
)


def test_uninstall_leaves_nothing_but_the_crd(cluster: Cluster, release: str) -> None:
    cluster.kubectl("delete", "sagas", "--all", "-n", release, "--wait=true", timeout=120)
    cluster.helm("uninstall", RELEASE, "--namespace", release, "--wait", "--timeout", "3m")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    # The Deployments are gone when uninstall returns; their pods end after their grace period.
    cluster.kubectl("wait", "--for=delete", "pods", "-n", release, "-l", selector, "--timeout=120s")
    left = cluster.kubectl("get", KINDS, "-n", release, "-l", selector, "-o", "name")
    assert left.strip() == "", f"left behind in {release}: {left}"
    pods = cluster.kubectl("get", "pods", "-n", release, "-o", "name")
    assert pods.strip() == "", f"pods left behind: {pods}"
    cluster_wide = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
    )
    assert cluster_wide.strip() == "", f"cluster-wide RBAC left behind: {cluster_wide}"
    crd = cluster.kubectl("get", "crd", "sagas.kubesaga.io", "-o", "name")
    assert crd.strip() == "customresourcedefinition.apiextensions.k8s.io/sagas.kubesaga.io"
