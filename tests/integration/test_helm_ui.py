"""The chart's optional UI (``ui.enabled``): off by default, read-only unless ``ui.actions``.

The decisive check runs ``kubesaga ui`` itself authenticated as the chart's UI ServiceAccount
(RBAC created on the platform's apiserver): with only those rules it lists and watches Sagas,
reads their Events, and may compensate and approve (as itself) exactly when actions are enabled.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from kubesaga.client import AsyncSagaClient
from kubesaga.models import SagaSpec, StepPhase
from kubesaga.settings import Settings
from kubesaga.store import make_api_client
from kubesaga.ui import make_app, serving
from tests.integration.chart import delete, find, one, render, server_side_apply, token_kubeconfig

READ_ONLY = [
    {"apiGroups": ["kubesaga.io"], "resources": ["sagas"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]


def ui_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "ui"]


def test_the_ui_is_off_by_default() -> None:
    assert ui_docs(render("kubesaga")) == []


def test_the_ui_is_read_only_unless_actions_are_enabled() -> None:
    docs = ui_docs(render("kubesaga", "--set", "ui.enabled=true"))
    assert one(docs, "ClusterRole")["rules"] == READ_ONLY
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["ui", "--address=0.0.0.0", "--port=8080", "--read-only"]
    assert "env" not in container  # no AMQP Secret, no settings: only the API
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "http"

    docs = ui_docs(render("kubesaga", "--set", "ui.enabled=true", "--set", "ui.actions=true"))
    assert one(docs, "ClusterRole")["rules"][0]["verbs"] == ["get", "list", "watch", "patch"]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--read-only" not in args


def test_a_ui_namespace_gets_a_role_there_and_nothing_cluster_wide() -> None:
    docs = ui_docs(render("kubesaga", "--set", "ui.enabled=true", "--set", "ui.namespace=shop"))
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    assert one(docs, "Role")["metadata"]["namespace"] == "shop"
    assert one(docs, "RoleBinding")["subjects"][0]["namespace"] == "kubesaga"
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=shop" in args


async def test_the_ui_pod_is_admitted_by_pod_security_restricted(
    api_client: client.ApiClient, namespace: str
) -> None:
    await client.CoreV1Api(api_client).patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    docs = ui_docs(render(namespace, "--set", "ui.enabled=true", "--set", "ui.actions=true"))
    await server_side_apply(api_client, docs, dry_run=True)
    deployment = one(docs, "Deployment")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": deployment["metadata"]["name"], "namespace": namespace},
        "spec": deployment["spec"]["template"]["spec"],
    }
    await server_side_apply(api_client, [pod], dry_run=True)


@pytest_asyncio.fixture(loop_scope="session")
async def ui_as_its_service_account(
    request: pytest.FixtureRequest,
    api_client: client.ApiClient,
    kubeconfig: str,
    namespace: str,
    saga_crd: dict[str, Any],
    tmp_path: Path,
) -> AsyncIterator[str]:
    """The chart's UI RBAC created; ``kubesaga ui`` served with the ServiceAccount's token."""
    actions = request.node.callspec.params.get("actions", False)
    scoped = request.node.callspec.params.get("scope") is not None
    release = f"ks-{uuid.uuid4().hex[:8]}"
    options = ["--set", "ui.enabled=true", "--set", f"ui.actions={str(actions).lower()}"]
    if scoped:
        options += ["--set", f"ui.namespace={namespace}"]
    docs = ui_docs(render(namespace, *options, release=release))
    rbac = [d for d in docs if d["kind"] not in ("Deployment", "Service")]
    await server_side_apply(api_client, rbac, dry_run=False)
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    try:
        token = await client.CoreV1Api(api_client).create_namespaced_service_account_token(
            account,
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
        )
        path = token_kubeconfig(kubeconfig, token.status.token, tmp_path / "ui")
        api = await make_api_client(str(path))
        try:
            scope = request.node.callspec.params.get("scope")
            app = make_app(api, namespace if scope == "namespace" else None, read_only=not actions)
            async with serving(app, "127.0.0.1", 0) as port:
                yield f"http://127.0.0.1:{port}"
        finally:
            await api.close()
    finally:
        await delete(api_client, [d for d in rbac if d["kind"].startswith("Cluster")])


@pytest.mark.parametrize("actions", [False, True])
async def test_the_ui_works_with_only_the_chart_rbac(
    ui_as_its_service_account: str, saga_client: AsyncSagaClient, namespace: str, actions: bool
) -> None:
    ui = ui_as_its_service_account
    spec = SagaSpec.model_validate({"steps": [{"name": "a", "action": "x.never"}]})
    await saga_client.create("seen", spec)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{ui}/api/stream") as stream:
            async for line in stream.content:  # the snapshot or the saga's upsert names it
                if line.startswith(b"data:") and b'"seen"' in line:
                    break
        assert (await http.get(f"{ui}/readyz")).status == 200  # listed, and watching
        saga = f"{ui}/api/sagas/{namespace}/seen"
        async with http.get(f"{saga}/stream") as stream:
            async for line in stream.content:
                if line.startswith(b"data:"):
                    detail = json.loads(line[5:])
                    break
        assert detail["name"] == "seen" and detail["canCompensate"] is actions
        events = await (await http.get(f"{saga}/events")).json()
        assert events["error"] is None  # listing Events is allowed
        answer = await http.post(f"{saga}/compensate", headers={"X-Kubesaga-Action": "compensate"})
        assert answer.status == (200 if actions else 403)
    assert (await saga_client.get("seen")).spec.compensate is actions


@pytest.mark.parametrize("actions", [True])
async def test_an_approval_through_the_ui_is_recorded_as_its_service_account(
    ui_as_its_service_account: str,
    running_operator: Settings,
    saga_client: AsyncSagaClient,
    namespace: str,
    actions: bool,
) -> None:
    """The chart's patch rule is all Approve needs (the SelfSubjectReview needs no RBAC), and
    ``by`` is the UI's account, not the test's admin user."""
    ui = ui_as_its_service_account
    await saga_client.start("gated", [{"name": "gate", "approval": {}}])
    async with contextlib.aclosing(saga_client.watch("gated", 60)) as snapshots:
        async for saga in snapshots:
            if saga.status and saga.status.step("gate").phase is StepPhase.AWAITING_APPROVAL:
                break
    async with aiohttp.ClientSession() as http:
        answer = await http.post(
            f"{ui}/api/sagas/{namespace}/gated/approve",
            json={"step": "gate", "reason": "alice, on the phone"},
            headers={"X-Kubesaga-Action": "approve"},
        )
        assert answer.status == 200, await answer.text()
    saga = await saga_client.wait("gated", 60)
    approval = saga.status.step("gate").approval if saga.status else None
    assert approval is not None and approval.reason == "alice, on the phone"
    by = approval.by or ""
    assert by.startswith(f"system:serviceaccount:{namespace}:") and by.endswith("-kubesaga-ui")


@pytest.mark.parametrize("scope", ["namespace", "cluster"])
async def test_a_namespaced_ui_needs_its_namespace_flag(
    ui_as_its_service_account: str, scope: str
) -> None:
    """With ui.namespace the RBAC is a Role there: the UI watches that namespace (the chart
    passes --namespace); watching every namespace is refused, and the page says what to do."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{ui_as_its_service_account}/api/stream") as stream,
    ):
        async for line in stream.content:  # snapshot, then status when the watch fails/recovers
            if line.startswith(b"data:"):
                error = json.loads(line[5:])["error"]
                # RBAC just created can take a moment to apply: wait for the settled state
                if (error is None) is (scope == "namespace"):
                    break
        ready = (await http.get(f"{ui_as_its_service_account}/readyz")).status
    if scope == "namespace":
        assert ready == 200
    else:
        assert "403" in error and "--namespace" in error
        assert ready == 503
