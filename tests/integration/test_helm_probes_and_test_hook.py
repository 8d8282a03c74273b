"""The chart's probes, worker images, Kubernetes version and ``helm test`` hook.

Rendered by the real helm; the hook's Pod is admitted under Pod Security "restricted" by the real
apiserver, and its program runs (as a process, there is no kubelet) with nothing but the hook's
own ServiceAccount against a real operator.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from kubesaga.settings import Settings
from tests.integration.chart import (
    CHART,
    WORKERS_VALUES,
    Doc,
    find,
    helm,
    one,
    render,
    server_side_apply,
    token_kubeconfig,
)
from tests.integration.harness import operator_env

HOOK = "helm.sh/hook"
WAIT_S = 90


def container(docs: list[Doc], kind: str, name: str | None = None) -> dict[str, Any]:
    spec = one(docs, kind, name)
    pod = spec["spec"]["template"]["spec"] if kind == "Deployment" else spec["spec"]
    (only,) = pod["containers"]
    return dict(only)


def probes(c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        name: (c[name]["httpGet"]["path"], c[name]["httpGet"]["port"])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }


def hook_objects(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if (doc["metadata"].get("annotations") or {}).get(HOOK) == "test"]


# ------------------------------------------------------------------------ versions and probes


def test_kubernetes_older_than_1_31_is_refused() -> None:
    """selectableFields in the CRD (kubectl get sagas --field-selector status.phase=...)."""
    proc = helm("template", "kubesaga", str(CHART), "--kube-version", "v1.30.9")
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr, proc.stderr
    assert render("kubesaga", kube_version="v1.31.0")


def test_operator_probes_use_livez_and_readyz_on_the_metrics_port() -> None:
    operator = container(render("kubesaga"), "Deployment", "kubesaga")
    assert operator["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert probes(operator) == {
        "startupProbe": ("/livez", "metrics"),  # an outage at start must not restart the pod
        "livenessProbe": ("/livez", "metrics"),
        "readinessProbe": ("/readyz", "metrics"),
    }


def test_workers_serve_their_probes_on_the_health_port_from_one_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render("kubesaga", "-f", str(WORKERS_VALUES), "--set", "workerDefaults.healthPort=9000")
    workers = [d for d in find(docs, "Deployment") if d["metadata"]["name"] != "kubesaga"]
    assert workers
    for deployment in workers:
        worker = container([deployment], "Deployment")
        assert worker["ports"] == [{"name": "health", "containerPort": 9000, "protocol": "TCP"}]
        assert probes(worker) == {
            "startupProbe": ("/livez", "health"),
            "livenessProbe": ("/livez", "health"),
            "readinessProbe": ("/readyz", "health"),
        }
        env = {item["name"]: item for item in worker["env"]}
        monkeypatch.setenv("KUBESAGA_HEALTH_PORT", env["KUBESAGA_HEALTH_PORT"]["value"])
        assert Settings().health_port == 9000


def test_a_zero_health_port_is_refused_when_workers_are_declared() -> None:
    args = ["-f", str(WORKERS_VALUES), "--set", "workerDefaults.healthPort=0"]
    proc = helm("template", "kubesaga", str(CHART), "--kube-version", "v1.34.0", *args)
    assert proc.returncode != 0 and "workerDefaults.healthPort" in proc.stderr


DEFAULT_REPO = "workerDefaults.image.repository=handlers"


@pytest.mark.parametrize(
    ("options", "image"),
    [
        ([], "kubesaga:0.1.0"),
        ([DEFAULT_REPO], "handlers:0.1.0"),
        ([DEFAULT_REPO, "image.tag=dev"], "handlers:0.1.0"),
        ([DEFAULT_REPO, "workerDefaults.image.tag=7"], "handlers:7"),
        ([DEFAULT_REPO, "workers[0].image=own:1"], "own:1"),
    ],
    ids=["chart-image", "defaults-appversion", "not-the-chart-tag", "defaults-tag", "own-image"],
)
def test_worker_image_is_its_own_else_the_worker_default_else_the_charts(
    options: list[str], image: str
) -> None:
    values = ["workers[0].name=w", "workers[0].module=m:worker", *options]
    docs = render("kubesaga", *(arg for value in values for arg in ("--set", value)))
    assert container(docs, "Deployment", "kubesaga-worker-w")["image"] == image


def test_example_workers_use_the_examples_image() -> None:
    docs = render("kubesaga", "-f", str(WORKERS_VALUES))
    operator = container(docs, "Deployment", "kubesaga")
    assert operator["image"] == "kubesaga:0.1.0"
    for deployment in find(docs, "Deployment"):
        if deployment["metadata"]["name"] != "kubesaga":
            assert container([deployment], "Deployment")["image"] == "kubesaga-examples:0.1.0"


def test_operator_gets_its_pod_name_as_its_identity() -> None:
    env = {item["name"]: item for item in container(render("kubesaga"), "Deployment")["env"]}
    assert env["KUBESAGA_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


# ------------------------------------------------------------------------------- helm test


def test_the_test_hook_is_only_test_hooks_deleted_after_success() -> None:
    docs = render("kubesaga", tests=True)
    hooks = hook_objects(docs)
    assert sorted(doc["kind"] for doc in hooks) == ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    for doc in hooks:
        policy = doc["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
        assert set(policy.split(",")) == {"before-hook-creation", "hook-succeeded"}
    assert hook_objects(render("kubesaga")) == []  # --skip-tests
    assert hook_objects(render("kubesaga", "--set", "helmTest.enabled=false", tests=True)) == []


def test_the_test_hook_may_only_create_read_watch_and_delete_sagas() -> None:
    hooks = hook_objects(render("kubesaga", tests=True))
    role, binding, account, pod = (
        one(hooks, kind) for kind in ("Role", "RoleBinding", "ServiceAccount", "Pod")
    )
    assert role["rules"] == [
        {
            "apiGroups": ["kubesaga.io"],
            "resources": ["sagas"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "kubesaga"}
    ]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["containers"][0]["image"] == "kubesaga:0.1.0"  # the chart's image


def test_namespaced_the_test_saga_runs_in_the_first_served_namespace() -> None:
    namespaced = ["--set", "operator.namespaces={shop,billing}"]
    hooks = hook_objects(render("kubesaga", *namespaced, tests=True))
    assert one(hooks, "Role")["metadata"]["namespace"] == "shop"
    assert one(hooks, "RoleBinding")["metadata"]["namespace"] == "shop"
    env = {e["name"]: e["value"] for e in one(hooks, "Pod")["spec"]["containers"][0]["env"]}
    assert env["SAGA_NAMESPACE"] == "shop"


async def test_the_test_hook_is_accepted_and_its_pod_admitted_by_pod_security_restricted(
    api_client: client.ApiClient, namespace: str
) -> None:
    await client.CoreV1Api(api_client).patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    await server_side_apply(api_client, hook_objects(render(namespace, tests=True)), dry_run=True)


@pytest.mark.usefixtures("saga_crd")
async def test_the_test_hook_passes_against_a_running_operator_with_only_its_own_rbac(
    api_client: client.ApiClient,
    kubeconfig: str,
    running_operator: Settings,
    namespace: str,
    tmp_path: Path,
) -> None:
    """What `helm test` runs, run here as a process authenticated as the hook's ServiceAccount."""
    hooks = hook_objects(render(namespace, tests=True))
    rbac = [doc for doc in hooks if doc["kind"] != "Pod"]
    await server_side_apply(api_client, rbac, dry_run=False)  # the namespace goes afterwards
    pod = one(hooks, "Pod")
    (test,) = pod["spec"]["containers"]
    token = await client.CoreV1Api(api_client).create_namespaced_service_account_token(
        pod["spec"]["serviceAccountName"],
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    )
    env = operator_env(running_operator) | {e["name"]: e["value"] for e in test["env"]}
    env["KUBECONFIG"] = str(token_kubeconfig(kubeconfig, token.status.token, tmp_path / "sa"))
    assert test["command"] == ["python", "-c"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        *test["args"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0, output.decode()
    assert b": Completed" in output
    listed = await client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "kubesaga.io", "v1alpha1", namespace, "sagas"
    )
    assert listed["items"] == [], "the test deletes its Saga"
