"""``helm install`` on a real node: every pod admitted under Pod Security ``restricted``."""

from __future__ import annotations

from tests.cluster.kube import RELEASE, Cluster


def _pods(cluster: Cluster, namespace: str) -> list[dict[str, object]]:
    items = cluster.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={RELEASE}")
    assert isinstance(items, dict)
    pods = items["items"]
    assert isinstance(pods, list)
    return pods


def test_cluster_dns_resolves_services(cluster: Cluster) -> None:
    service = cluster.get_json("service", "-n", "kube-system", "kube-dns")
    assert service["spec"]["clusterIP"] == "10.96.0.10"
    endpoints = cluster.get_json(
        "endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kube-dns"
    )
    ready = [
        ep
        for s in endpoints["items"]
        for ep in s.get("endpoints") or []
        if ep.get("conditions", {}).get("ready")
    ]
    assert ready, "CoreDNS has no ready endpoint"


def test_every_pod_is_admitted_as_restricted_and_ready(cluster: Cluster, release: str) -> None:
    labels = cluster.get_json("namespace", release)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = _pods(cluster, release)
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}  # type: ignore[index]
    assert components == {"operator", "worker"}
    deployments = cluster.get_json("deployments", "-n", release)["items"]
    assert len(deployments) == 7  # the operator and the six examples' workers
    for pod in pods:
        name = pod["metadata"]["name"]  # type: ignore[index]
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}  # type: ignore[index]
        assert conditions.get("Ready") == "True", f"{name} is not Ready: {pod['status']}"
        for status in pod["status"]["containerStatuses"]:  # type: ignore[index]
            assert status["restartCount"] == 0, f"{name} restarted: {status}"


def test_operator_runs_as_uid_10001_without_errors(cluster: Cluster, release: str) -> None:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"
    uid = cluster.kubectl(
        "exec", "-n", release, f"deploy/{RELEASE}", "--", "id", "-u", check=False
    ).strip()
    pod = cluster.get_json("pods", "-n", release, "-l", selector)["items"][0]
    context = {
        **pod["spec"].get("securityContext", {}),
        **pod["spec"]["containers"][0].get("securityContext", {}),
    }
    assert context["runAsUser"] == 10001 and context["runAsNonRoot"] is True
    if uid:  # the image has `id` (coreutils); the securityContext above is checked either way
        assert uid == "10001"
    logs = cluster.kubectl("logs", "-n", release, "-l", selector, "--tail=-1")
    assert "Traceback" not in logs and "getpwuid" not in logs, logs[-3000:]
