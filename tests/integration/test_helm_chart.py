"""The Helm chart: linted and rendered by a real helm, checked against the real kube-apiserver.

The chart's promises, one per test: it lints clean; it renders objects the apiserver accepts
(server-side dry run, strict field validation, Pod Security "restricted"); its CRD is the
generated one; its RBAC is exactly what the operator calls and the operator runs with nothing
more; every value is commented and maps onto ``kubesaga.settings.Settings``.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import tarfile
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio import client

from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.settings import WORKER, Settings, env_name, use_of
from kubesaga.store.watching import watch_until
from tests.integration.chart import (
    CHART,
    REPO_ROOT,
    WORKERS_VALUES,
    Doc,
    delete,
    find,
    helm,
    helm_output,
    one,
    render,
    server_side_apply,
    token_kubeconfig,
)
from tests.integration.harness import OperatorProcess

CRD_FILE = REPO_ROOT / "crds" / "kubesaga.io_sagas.yaml"
WAIT_S = 60

EXPECTED_RULES = [
    {
        "apiGroups": ["kubesaga.io"],
        "resources": ["sagas"],
        "verbs": ["get", "list", "watch", "patch", "delete"],
    },
    {"apiGroups": ["kubesaga.io"], "resources": ["sagas/status"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
# Cluster-wide only: kopf's resource observer follows the Saga CRD at run time.
CRD_RULE = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["list", "watch"],
}

# Every mode: the shard Leases, in the release's namespace only (a Role of its own).
LEASE_RULE = {
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "verbs": ["get", "list", "watch", "create", "update", "delete"],
}

# (apiGroup, resource, subresource, verb): every call the operator makes, and why.
OPERATOR_CALLS = [
    ("kubesaga.io", "sagas", "", "list"),  # shard watches and kopf's catch-all: initial list
    ("kubesaga.io", "sagas", "", "watch"),  # shard watches and kopf's catch-all
    ("kubesaga.io", "sagas", "", "patch"),  # a mislabelled saga's shard-key label
    ("kubesaga.io", "sagas", "", "get"),  # re-read after a 409 Conflict
    ("kubesaga.io", "sagas", "", "delete"),  # ttlSecondsAfterFinished
    ("kubesaga.io", "sagas", "status", "update"),  # status replace carrying resourceVersion
    ("", "events", "", "create"),  # one Event per transition (kopf's posting is off)
    ("coordination.k8s.io", "leases", "", "list"),  # the shard manager's read of its Leases
    ("coordination.k8s.io", "leases", "", "create"),  # a shard's or its member Lease, first
    ("coordination.k8s.io", "leases", "", "update"),  # renew, take over, hand back (replace)
    ("coordination.k8s.io", "leases", "", "delete"),  # its member Lease on shutdown, stale ones
]
# Cluster-scoped calls kopf makes in cluster-wide mode (its resource observer).
KOPF_CLUSTER_CALLS = [
    ("apiextensions.k8s.io", "customresourcedefinitions", "", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "", "watch"),
]

# Calls the operator never makes, so its ServiceAccount must not be allowed them.
NOT_ALLOWED = [
    ("", "secrets", "", "get"),
    ("", "secrets", "", "list"),
    ("", "configmaps", "", "get"),
    ("", "pods", "", "list"),
    ("", "events", "", "delete"),
    ("", "namespaces", "", "list"),
    ("kubesaga.io", "sagas", "", "create"),
    ("kubesaga.io", "sagas", "", "update"),
    ("kubesaga.io", "sagas", "status", "patch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "", "create"),
    ("coordination.k8s.io", "leases", "", "patch"),
    ("kopf.dev", "kopfpeerings", "", "list"),
]

MODES = ["cluster-wide", "namespaced"]

# kopf's cluster-scoped observers, refused in namespaced mode (kopf retries, then falls back).
KOPF_OBSERVER_REFUSED = re.compile(
    r"GET \S+/(api/v1/namespaces|apis/apiextensions\.k8s\.io/v1/customresourcedefinitions)"
    r"(\?\S*)? -> APIForbiddenError"
)


def mode_options(mode: str, namespaces: Iterable[str]) -> list[str]:
    return (
        []
        if mode == "cluster-wide"
        else ["--set", f"operator.namespaces={{{','.join(namespaces)}}}"]
    )


def roles(docs: Iterable[Doc]) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] in ("Role", "ClusterRole")]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


# ----------------------------------------------------------------------------------- helm itself


@pytest.mark.parametrize(
    "options",
    [[], ["-f", str(WORKERS_VALUES)], ["--set", "operator.namespaces={a,b}"]],
    ids=["defaults", "workers", "namespaced"],
)
def test_chart_lints_clean_in_strict_mode(options: list[str]) -> None:
    proc = helm("lint", "--strict", str(CHART), *options)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_rendered_and_packaged_crd_equal_the_generated_file(tmp_path: Path) -> None:
    """The chart holds its own copy (drift-checked by tests/unit/test_crd.py), so a copy of the
    chart directory, without the repository around it, still packages the CRD."""
    rendered = one(render("kubesaga", crds=True), "CustomResourceDefinition")
    assert rendered == yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    copy = shutil.copytree(CHART, tmp_path / "copy" / "kubesaga", symlinks=True)
    helm_output("package", str(copy), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("kubesaga-*.tgz")
    with tarfile.open(package) as tar:
        member = tar.extractfile(f"kubesaga/crds/{CRD_FILE.name}")
        assert member is not None
        assert member.read() == CRD_FILE.read_bytes()
        schema = tar.extractfile("kubesaga/values.schema.json")  # helm checks values with it
        assert schema is not None
        assert schema.read() == (CHART / "values.schema.json").read_bytes()


# ------------------------------------------------------------------------- the real apiserver


@pytest.mark.parametrize(
    "options",
    [[], ["-f", str(WORKERS_VALUES)], ["namespaced"]],
    ids=["defaults", "workers", "namespaced"],
)
async def test_rendering_is_accepted_by_the_apiserver_server_side_dry_run(
    api_client: client.ApiClient, namespace: str, options: list[str]
) -> None:
    if options == ["namespaced"]:
        options = mode_options("namespaced", [namespace])
    docs = render(namespace, *options, crds=True)
    await server_side_apply(api_client, docs, dry_run=True)


async def test_pods_are_admitted_by_pod_security_restricted(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    await core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    for deployment in find(render(namespace, "-f", str(WORKERS_VALUES)), "Deployment"):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": deployment["metadata"]["name"], "namespace": namespace},
            "spec": deployment["spec"]["template"]["spec"],
        }
        await server_side_apply(api_client, [pod], dry_run=True)


# ------------------------------------------------------------------------------------------ RBAC


def test_cluster_wide_mode_grants_exactly_the_operator_rules() -> None:
    docs = render("kubesaga")
    assert one(docs, "ClusterRole")["rules"] == [*EXPECTED_RULES, CRD_RULE]
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "kubesaga"}
    ]
    assert_lease_role_only_in(docs, "kubesaga")


CLUSTER_SCOPED = (
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


def test_two_releases_of_one_name_in_two_namespaces_share_no_cluster_scoped_object() -> None:
    """A cluster-scoped name made of the release name alone made the second install fail
    ("exists and cannot be imported into the current release")."""
    options = ("--set", "ui.enabled=true", "--set", "approvals.checkApprover=true")
    names = {}
    for namespace in ("shop", "billing"):
        docs = render(namespace, *options)
        scoped = [d for d in docs if d["kind"] in CLUSTER_SCOPED]
        assert {d["kind"] for d in scoped} == set(CLUSTER_SCOPED)
        names[namespace] = {(d["kind"], d["metadata"]["name"]) for d in scoped}
        for binding in find(docs, "ClusterRoleBinding"):  # each still points at its own role
            assert ("ClusterRole", binding["roleRef"]["name"]) in names[namespace]
    assert not names["shop"] & names["billing"]


def assert_lease_role_only_in(docs: list[Doc], namespace: str) -> None:
    (leases,) = [r for r in find(docs, "Role") if r["metadata"]["name"].endswith("-leases")]
    assert leases["metadata"]["namespace"] == namespace
    assert leases["rules"] == [LEASE_RULE]
    (binding,) = [b for b in find(docs, "RoleBinding") if b["roleRef"]["name"].endswith("-leases")]
    assert binding["metadata"]["namespace"] == namespace


def test_namespaced_mode_grants_a_role_per_namespace_and_nothing_cluster_wide() -> None:
    docs = render("kubesaga", *mode_options("namespaced", ["shop", "billing"]))
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    assert_lease_role_only_in(docs, "kubesaga")
    saga_roles = [r for r in find(docs, "Role") if not r["metadata"]["name"].endswith("-leases")]
    assert {role["metadata"]["namespace"] for role in saga_roles} == {"shop", "billing"}
    for role in saga_roles:
        assert role["rules"] == EXPECTED_RULES
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    for binding in find(docs, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "kubesaga"}
        ]


@pytest.mark.parametrize("mode", MODES)
def test_rules_have_no_wildcards_and_no_secrets(mode: str) -> None:
    docs = render("kubesaga", "-f", str(WORKERS_VALUES), *mode_options(mode, ["shop"]))
    assert roles(docs)
    for role in roles(docs):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], rule
            assert "secrets" not in rule["resources"], rule
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule


@pytest_asyncio.fixture(loop_scope="session")
async def installed_rbac(
    request: pytest.FixtureRequest, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[tuple[str, str]]:
    """The chart's ServiceAccount and RBAC really created (mode from the test's ``mode``).

    Yields (mode, ServiceAccount name). The release name is unique, so the cluster-scoped
    objects of concurrent runs do not collide; they are deleted afterwards.
    """
    mode = request.node.callspec.params["mode"]
    release = f"ks-{uuid.uuid4().hex[:8]}"
    docs = render(namespace, *mode_options(mode, [namespace]), release=release)
    wanted = [
        doc
        for doc in docs
        if doc["kind"]
        in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    await server_side_apply(api_client, wanted, dry_run=False)
    try:
        yield mode, one(docs, "ServiceAccount")["metadata"]["name"]
    finally:
        await delete(api_client, [d for d in wanted if d["kind"].startswith("Cluster")])


async def allowed(
    api_client: client.ApiClient,
    account: str,
    namespace: str,
    call: tuple[str, str, str, str],
    where: str,
) -> bool:
    group, resource, subresource, verb = call
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{account}",
            groups=[
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
            resource_attributes=client.V1ResourceAttributes(
                group=group,
                resource=resource,
                subresource=subresource or None,
                verb=verb,
                namespace=where or None,
            ),
        )
    )
    result = await client.AuthorizationV1Api(api_client).create_subject_access_review(review)
    return bool(result.status.allowed)


@pytest.mark.parametrize("mode", MODES)
async def test_service_account_may_make_every_operator_call_and_no_other(
    api_client: client.ApiClient, namespace: str, installed_rbac: tuple[str, str], mode: str
) -> None:
    _, account = installed_rbac
    for call in OPERATOR_CALLS:
        assert await allowed(api_client, account, namespace, call, namespace), call
    for call in NOT_ALLOWED:
        assert not await allowed(api_client, account, namespace, call, namespace), call
    for call in KOPF_CLUSTER_CALLS:
        assert await allowed(api_client, account, namespace, call, "") == (mode == "cluster-wide")
    if mode == "namespaced":
        for call in OPERATOR_CALLS:
            assert not await allowed(api_client, account, namespace, call, ""), call
            assert not await allowed(api_client, account, namespace, call, "default"), call


REFUSED = re.compile(r"forbidden|\b403\b", re.I)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
"""A log line's time stamp: its milliseconds can be 403 (a CI run failed on ",403 INFO")."""


@pytest.mark.parametrize("mode", MODES)
async def test_operator_drives_a_saga_with_only_the_chart_rbac(
    api_client: client.ApiClient,
    kubeconfig: str,
    amqp_url: str,
    namespace: str,
    installed_rbac: tuple[str, str],
    saga_crd: dict[str, Any],
    mode: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real operator, authenticated as the chart's ServiceAccount: it watches, writes the
    status, posts an Event and deletes the finished Saga (TTL 0). Cluster-wide, no call is
    refused; namespaced, only kopf's cluster-scoped observers are (it falls back, see rbac.yaml).
    """
    _, account = installed_rbac
    token = await client.CoreV1Api(api_client).create_namespaced_service_account_token(
        account,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    )
    suffix = uuid.uuid4().hex[:8]
    sa_kubeconfig = str(token_kubeconfig(kubeconfig, token.status.token, tmp_path / "sa"))
    monkeypatch.setenv("KUBECONFIG", sa_kubeconfig)  # Settings reads it by its env name only
    settings = Settings(
        amqp_url=amqp_url,
        namespaces=[namespace] if mode == "namespaced" else [],
        results_queue=f"kubesaga.results.{suffix}",
        dead_letter_queue=f"kubesaga.dead-letter.{suffix}",
        metrics_port=0,
        pod_namespace=namespace,  # the release's namespace, where the chart grants Leases
    )
    assert settings.kubeconfig == sa_kubeconfig
    sagas = client.CustomObjectsApi(api_client)
    operator = OperatorProcess(settings)
    await operator.start()
    try:
        since = await sagas_resource_version(sagas, namespace)
        await sagas.create_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "Saga",
                "metadata": {"name": "rbac-check"},
                "spec": {"steps": [], "ttlSecondsAfterFinished": 0},
            },
        )
        phases = await saga_history(sagas, namespace, since)
    finally:
        await operator.stop()
    assert phases[-1] == "DELETED" and "Completed" in phases, phases
    events = await client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=rbac-check"
    )
    assert "Completed" in {event.reason for event in events.items}
    refused = [line for line in operator.log if REFUSED.search(TIMESTAMP.sub("", line))]
    if mode == "namespaced":
        refused = [line for line in refused if not KOPF_OBSERVER_REFUSED.search(line)]
    assert not refused, "\n".join(refused)


async def sagas_resource_version(sagas: client.CustomObjectsApi, namespace: str) -> str:
    """The list's resourceVersion, following Retry-After while the apiserver's watch cache for a
    just-installed CRD answers 429 "storage is (re)initializing" (as client-go's reflector does)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                listed = await sagas.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, PLURAL
                )
                return str(listed["metadata"]["resourceVersion"])
            except client.ApiException as error:
                if error.status != 429:
                    raise
                retry_after = error.headers.get("Retry-After", "1") if error.headers else "1"
                await asyncio.sleep(float(retry_after))


async def saga_history(sagas: client.CustomObjectsApi, namespace: str, since: str) -> list[str]:
    """Phases of the rbac-check Saga as the watch delivers them, up to its deletion."""
    phases: list[str] = []

    def deleted(kind: str, obj: Any) -> bool | None:
        phases.append(
            "DELETED" if kind == "DELETED" else str((obj.get("status") or {}).get("phase", ""))
        )
        return True if kind == "DELETED" else None

    async with asyncio.timeout(WAIT_S):
        await watch_until(
            sagas.list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            check=deleted,
            resource_version=since,
        )
    return phases


# ------------------------------------------------------------------------------ values and env


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    uncommented = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z0-9_.-]+):", line)
        if not match:
            continue
        above = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        if not above.strip().startswith("#") or " #" in line.split(":", 1)[0]:
            uncommented.append(f"values.yaml:{number + 1}: {line.strip()}")
        elif not above.startswith(match.group(1) + "#"):
            uncommented.append(f"values.yaml:{number + 1}: comment not aligned: {line.strip()}")
    assert not uncommented, "\n".join(uncommented)


def test_every_value_is_used_by_a_template() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    templates = "\n".join(
        p.read_text(encoding="utf-8") for p in (CHART / "templates").rglob("*") if p.is_file()
    )

    def used(path: str) -> bool:
        parts = path.split(".")
        return any(
            re.search(re.escape(".Values." + ".".join(parts[:n])) + r"(?![\w])", templates)
            for n in range(len(parts), 0, -1)
        )

    def leaves(node: Any, prefix: str) -> Iterable[str]:
        if isinstance(node, dict) and node:
            for key, child in node.items():
                yield from leaves(child, f"{prefix}.{key}" if prefix else key)
        else:
            yield prefix

    unused = [path for path in leaves(values, "") if not used(path)]
    assert not unused, unused


OVERRIDES = {
    "amqp.caSecret": "broker-ca",
    "amqp.quorumQueues": "true",
    "amqp.resultsQueue": "results.x",
    "amqp.deadLetterQueue": "dead.x",
    "operator.namespaces": "{shop,billing}",
    "operator.prefetch": "7",
    "operator.graceSeconds": "12",
    "operator.events": "phases",
    "operator.redeliverAfterSeconds": "45",
    "operator.shards": "32",
    "operator.shardLeaseSeconds": "20",
    "operator.shardRenewSeconds": "4",
    "metrics.port": "9090",
    "metrics.host": "127.0.0.1",
    "log.level": "DEBUG",
    "log.format": "text",
}


def test_operator_env_maps_one_to_one_onto_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    options = [arg for key, value in OVERRIDES.items() for arg in ("--set", f"{key}={value}")]
    docs = render("kubesaga", *options, "--set", "amqp.url=amqp://u:p@mq:5672/v")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    fields = {f"KUBESAGA_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    # in-cluster configuration; the health port, concurrency and grace of workers are theirs
    worker_only = {
        env_name(n) for n, f in Settings.model_fields.items() if use_of(f).by == (WORKER,)
    }
    assert set(env) == fields - {"KUBESAGA_KUBECONFIG"} - worker_only
    assert env["KUBESAGA_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["KUBESAGA_POD_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }

    secret = one(docs, "Secret")
    ref = env["KUBESAGA_AMQP_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    monkeypatch.delenv("KUBECONFIG", raising=False)
    for name, item in env.items():
        if name == "KUBESAGA_AMQP_URL":
            monkeypatch.setenv(name, secret["stringData"][ref["key"]])
        elif name == "KUBESAGA_POD_NAME":
            monkeypatch.setenv(name, "kubesaga-5f7d8-x2x9z")  # what the downward API gives
        elif name == "KUBESAGA_POD_NAMESPACE":
            monkeypatch.setenv(name, "kubesaga")
        else:
            monkeypatch.setenv(name, item["value"])
    settings = Settings()
    assert settings.amqp_url == "amqp://u:p@mq:5672/v"
    assert settings.amqp_ca_file == "/etc/kubesaga/amqp-ca/ca.crt"
    assert (settings.quorum_queues, settings.results_queue, settings.dead_letter_queue) == (
        True,
        "results.x",
        "dead.x",
    )
    assert settings.namespaces == ["shop", "billing"]
    assert (settings.operator_prefetch, settings.events, settings.redeliver_after_seconds) == (
        7,
        "phases",
        45,
    )
    assert settings.operator_grace_seconds == 12
    assert (
        one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 22
    )
    assert (settings.metrics_port, settings.metrics_host) == (9090, "127.0.0.1")
    assert (settings.log_level, settings.log_format) == ("DEBUG", "text")
    assert settings.pod_name == "kubesaga-5f7d8-x2x9z"
    assert (settings.pod_namespace, settings.shard_lease_prefix) == ("kubesaga", "kubesaga")
    assert (settings.shards, settings.shard_lease_seconds, settings.shard_renew_seconds) == (
        32,
        20,
        4,
    )
    assert container["ports"][0]["containerPort"] == 9090
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/kubesaga/amqp-ca"] == "amqp-ca"


def test_existing_secret_replaces_the_chart_secret() -> None:
    docs = render("kubesaga", "--set", "amqp.existingSecret=rabbit", "--set", "amqp.secretKey=uri")
    assert not find(docs, "Secret")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ref = env_of(container)["KUBESAGA_AMQP_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "rabbit", "key": "uri"}


def test_workers_run_their_module_with_the_broker_settings_and_no_api_token() -> None:
    docs = render("kubesaga", "-f", str(WORKERS_VALUES))
    declared = yaml.safe_load(WORKERS_VALUES.read_text(encoding="utf-8"))["workers"]
    examples = {
        f"/app/{p.parent.relative_to(REPO_ROOT)}" for p in REPO_ROOT.glob("examples/*/handlers.py")
    }
    assert {worker["appDir"] for worker in declared} == examples
    fields = {f"KUBESAGA_{name.upper()}" for name in Settings.model_fields}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for worker in declared:
        deployment = one(docs, "Deployment", f"kubesaga-worker-{worker['name']}")
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == worker.get("replicas", 1)
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["image"] == "kubesaga-examples:0.1.0"  # workerDefaults.image
        assert container["args"] == ["worker", f"--app-dir={worker['appDir']}", worker["module"]]
        assert (REPO_ROOT / worker["appDir"].removeprefix("/app/") / "handlers.py").is_file()
        env = env_of(container)
        assert {name for name in env if name.startswith("KUBESAGA_")} <= fields
        assert {"KUBESAGA_AMQP_URL", "KUBESAGA_RESULTS_QUEUE"} <= env.keys()
        for item in worker.get("env", []):
            assert env[item["name"]] == item
        # the settings the worker process reads, with the chart's fallbacks to workerDefaults
        concurrency = worker.get("concurrency", defaults["workerDefaults"]["concurrency"])
        grace = worker.get("graceSeconds", defaults["workerDefaults"]["graceSeconds"])
        read = Settings(
            **{
                "worker_concurrency": env["KUBESAGA_WORKER_CONCURRENCY"]["value"],
                "worker_grace_seconds": env["KUBESAGA_WORKER_GRACE_SECONDS"]["value"],
                "health_port": env["KUBESAGA_HEALTH_PORT"]["value"],
            }
        )
        assert (read.worker_concurrency, read.worker_grace_seconds) == (concurrency, grace)
        assert read.health_port == defaults["workerDefaults"]["healthPort"]
        assert pod["terminationGracePeriodSeconds"] == math.ceil(grace) + 15


def test_a_worker_may_have_no_grace_period_at_all() -> None:
    """0 is a valid grace period, not "unset" (Helm's ``default`` would take it for unset)."""
    docs = render(
        "kubesaga",
        *("--set", "workers[0].name=w", "--set", "workers[0].module=m:w"),
        *("--set", "workers[0].graceSeconds=0"),
    )
    pod = one(docs, "Deployment", "kubesaga-worker-w")["spec"]["template"]["spec"]
    assert env_of(pod["containers"][0])["KUBESAGA_WORKER_GRACE_SECONDS"]["value"] == "0"
    assert pod["terminationGracePeriodSeconds"] == 15


# ----------------------------------------------------------------------- values.schema.json

MISSPELT = [
    (
        ["--set", "operator.prefech=7"],
        "at '/operator': additional properties 'prefech' not allowed",
    ),
    (
        ["--set", "amqp.resultQueue=r"],
        "at '/amqp': additional properties 'resultQueue' not allowed",
    ),
    (["--set", "imagePullPolicy=Always"], "additional properties 'imagePullPolicy' not allowed"),
    (
        [
            "--set",
            "workers[0].name=w",
            "--set",
            "workers[0].module=m:w",
            "--set",
            "workers[0].concurency=3",
        ],
        "at '/workers/0': additional properties 'concurency' not allowed",
    ),
    (["--set", "log.level=LOUD"], "at '/log/level'"),
    (["--set", "operator.prefetch=0"], "at '/operator/prefetch'"),
    (["--set", "workers[0].name=w"], "at '/workers/0': missing property 'module'"),
]


@pytest.mark.parametrize(("options", "message"), MISSPELT, ids=lambda v: str(v)[:40])
def test_a_misspelt_or_invalid_value_fails_helm_template_with_a_schema_error(
    options: list[str], message: str
) -> None:
    args = ["template", "kubesaga", str(CHART), "--kube-version", "v1.34.0", *options]
    proc = helm(*args)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


async def test_helm_install_with_a_misspelt_value_fails_before_creating_anything(
    api_client: client.ApiClient, kubeconfig: str, namespace: str
) -> None:
    """Against the real apiserver: the schema refuses the release, nothing is created."""
    release = f"ks-{uuid.uuid4().hex[:8]}"
    proc = helm(
        "install",
        release,
        str(CHART),
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        namespace,
        "--skip-crds",
        "--set",
        "operator.replica=2",
    )
    assert proc.returncode != 0
    assert "at '/operator': additional properties 'replica' not allowed" in proc.stderr
    secrets = await client.CoreV1Api(api_client).list_namespaced_secret(
        namespace, label_selector=f"owner=helm,name={release}"
    )
    assert secrets.items == []  # no release record
    deployments = await client.AppsV1Api(api_client).list_namespaced_deployment(namespace)
    assert not [d for d in deployments.items if d.metadata.name.startswith(release)]


def test_the_chart_refuses_kubernetes_older_than_the_crd_needs() -> None:
    proc = helm("template", "kubesaga", str(CHART), "--kube-version", "v1.30.9")
    assert proc.returncode != 0
    assert "chart requires kubeVersion: >=1.31.0-0" in proc.stderr, proc.stderr


def test_secret_holds_the_url_for_the_pods() -> None:
    secret = one(render("kubesaga", "--set", "amqp.url=amqp://a:b@c:5672/"), "Secret")
    assert secret["stringData"] == {"url": "amqp://a:b@c:5672/"}


def test_no_pod_gets_service_link_variables() -> None:
    """A Service named ``<release>-metrics`` makes the kubelet set KUBESAGA_METRICS_PORT=tcp://...
    in every pod of the namespace (Docker-link variables), which broke every worker on a real node:
    each pod the chart makes turns them off."""
    docs = render(
        "kubesaga", "-f", str(WORKERS_VALUES), "--set", "metrics.service.enabled=true", tests=True
    )
    pods = [d["spec"] for d in find(docs, "Pod")]
    pods += [d["spec"]["template"]["spec"] for d in find(docs, "Deployment")]
    assert len(pods) == 8  # the operator, six workers, the helm test hook
    assert all(pod.get("enableServiceLinks") is False for pod in pods)
