"""ttlSecondsAfterFinished: a refused delete is retried, not forgotten (issue 10, defect 6).

The operator runs as a ServiceAccount without ``delete`` on sagas, so its TTL delete gets 403
Forbidden; once the permission is granted, the next try deletes the saga. Only NotFound and the
uid precondition's Conflict may end the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from kubesaga import AsyncSagaClient, SagaPhase
from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.settings import Settings
from kubesaga.store.watching import watch_until
from tests.integration.chart import token_kubeconfig
from tests.integration.harness import operator_task, worker_task
from tests.integration.scripted import scripted_worker, step

pytestmark = pytest.mark.usefixtures("saga_crd")

WAIT_S = 60
OPERATOR_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "list", "create", "update", "delete"],
    },
]
DELETE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["delete"]},
]


class TtlFailures(logging.Handler):
    """Sets ``seen`` when the operator (in its own thread) reports a failed TTL delete."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().lower()
        if "ttl" in message and "fail" in message:
            self.records.append(record)
            self.seen.set()


@pytest.fixture
def ttl_failures() -> Iterator[TtlFailures]:
    handler = TtlFailures()
    logger = logging.getLogger("kubesaga.operator")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def grant(rbac: k8s.RbacAuthorizationV1Api, namespace: str, name: str, rules: Any) -> None:
    """A Role with ``rules`` bound to the test's ServiceAccount (the client takes plain dicts)."""
    role: Any = {"metadata": {"name": name}, "rules": rules}
    binding: Any = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "ttl-operator", "namespace": namespace}],
    }
    await rbac.create_namespaced_role(namespace, role)
    await rbac.create_namespaced_role_binding(namespace, binding)


async def deleted(api: k8s.ApiClient, namespace: str, name: str) -> None:
    """Return once the saga is gone (listed no more, or its DELETED event arrived)."""

    def gone(kind: str, obj: Any) -> bool | None:
        return True if kind == "DELETED" else None

    custom = k8s.CustomObjectsApi(api)
    listing = await custom.list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, field_selector=f"metadata.name={name}"
    )
    if not listing["items"]:
        return
    async with asyncio.timeout(WAIT_S):
        await watch_until(
            custom.list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            check=gone,
            field_selector=f"metadata.name={name}",
            resource_version=listing["metadata"]["resourceVersion"],
        )


async def test_ttl_delete_refused_is_retried_until_it_succeeds(
    api_client: k8s.ApiClient,
    kubeconfig: str,
    operator_settings: Settings,
    saga_client: AsyncSagaClient,
    namespace: str,
    prefix: str,
    tmp_path: Path,
    ttl_failures: TtlFailures,
) -> None:
    core, rbac = k8s.CoreV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client)
    await core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="ttl-operator"))
    )
    await grant(rbac, namespace, "ttl-operator", OPERATOR_RULES)
    token = await core.create_namespaced_service_account_token(
        "ttl-operator",
        namespace,
        k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    )
    sa_kubeconfig = str(token_kubeconfig(kubeconfig, token.status.token, tmp_path / "sa"))
    settings = operator_settings.model_copy(update={"kubeconfig": sa_kubeconfig})
    worker, _ = scripted_worker(prefix)
    async with operator_task(settings), worker_task(worker, settings):
        await saga_client.start(
            "short-lived", [step(prefix, "create_order")], ttl_seconds_after_finished=0
        )
        assert (await saga_client.wait("short-lived", WAIT_S)).phase is SagaPhase.COMPLETED
        assert await asyncio.to_thread(ttl_failures.seen.wait, WAIT_S), "no TTL delete tried"
        await grant(rbac, namespace, "ttl-delete", DELETE_RULES)
        await deleted(api_client, namespace, "short-lived")
    assert ttl_failures.records[0].levelno >= logging.WARNING
