"""Rendering the Helm chart with a real helm and sending it to the real kube-apiserver."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "kubesaga"
WORKERS_VALUES = CHART / "ci" / "workers-values.yaml"
TESTENV = REPO_ROOT / "hack" / "testenv.sh"
FIELD_MANAGER = "kubesaga-chart-test"

Doc = dict[str, Any]

# Where each kind the chart renders lives in the API: (path prefix, plural, namespaced).
PATHS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): (
        "/apis/rbac.authorization.k8s.io/v1",
        "rolebindings",
        True,
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterroles",
        False,
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        False,
    ),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
}


@functools.cache
def built_tool(name: str) -> str:
    """A cached binary that ``hack/testenv.sh <name>-path`` builds from the Go module proxy."""
    proc = subprocess.run(
        [str(TESTENV), f"{name}-path"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    path = proc.stdout.strip()
    if proc.returncode != 0 or not path:
        raise RuntimeError(f"`hack/testenv.sh {name}-path` failed:\n{proc.stderr}")
    return path


def helm_binary() -> str:
    """The cached helm v3."""
    return built_tool("helm")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def helm_output(*args: str) -> str:
    proc = helm(*args)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def render(
    namespace: str,
    *options: str,
    release: str = "kubesaga",
    kube_version: str = "v1.34.0",
    crds: bool = False,
    tests: bool = False,
) -> list[Doc]:
    """``helm template`` of the chart, parsed; ``options`` are helm flags (-f, --set ...).

    The ``helm test`` hook's objects are left out unless ``tests``.
    """
    args = ["template", release, str(CHART), "--namespace", namespace]
    args += ["--kube-version", kube_version, *options]
    if crds:
        args.append("--include-crds")
    if not tests:
        args.append("--skip-tests")
    return [doc for doc in yaml.safe_load_all(helm_output(*args)) if doc]


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def object_path(doc: Mapping[str, Any]) -> str:
    known = PATHS.get((doc["apiVersion"], doc["kind"]))
    assert known is not None, f"add {doc['apiVersion']} {doc['kind']} to PATHS"
    prefix, plural, namespaced = known
    name = doc["metadata"]["name"]
    if namespaced:
        return f"{prefix}/namespaces/{doc['metadata']['namespace']}/{plural}/{name}"
    return f"{prefix}/{plural}/{name}"


async def server_side_apply(
    api: client.ApiClient, docs: Iterable[Doc], *, dry_run: bool
) -> list[Doc]:
    """``kubectl apply --server-side [--dry-run=server] --force-conflicts``, strict fields.

    The apiserver runs its whole admission chain and schema validation; ``fieldValidation=Strict``
    turns an unknown or duplicated field (a typo in a template) into an error.
    """
    query = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict", "force": "true"}
    if dry_run:
        query["dryRun"] = "All"
    applied = []
    for doc in docs:
        response = await api.rest_client.request(
            "PATCH",
            f"{api.configuration.host}{object_path(doc)}",
            query_params=query,
            headers={
                "Content-Type": "application/apply-patch+yaml",
                "Accept": "application/json",
            },
            body=doc,
        )
        applied.append(json.loads(response.data))
    return applied


async def delete(api: client.ApiClient, docs: Iterable[Doc]) -> None:
    for doc in docs:
        try:
            await api.rest_client.request("DELETE", f"{api.configuration.host}{object_path(doc)}")
        except client.ApiException as error:
            if error.status != 404:
                raise


def token_kubeconfig(admin_kubeconfig: str, token: str, path: Path) -> Path:
    """A kubeconfig for the same apiserver that authenticates with a ServiceAccount token."""
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text(encoding="utf-8"))
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "platform", "cluster": cluster["cluster"]}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "platform", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
