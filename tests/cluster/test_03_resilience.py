"""Pods come and go as Kubernetes moves them; sagas still finish.

The sagas here reuse the examples' handlers (already deployed as worker pods) with inputs that
make one step slow: example 04's payment gateway hangs on its first attempt for ``hang_seconds``,
and the step's ``timeoutSeconds`` ends that attempt, so the saga is Running long enough to pull
pods from under it.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from typing import Any

import yaml

from tests.cluster.kube import CHART, EXAMPLES, RELEASE, Cluster


def _slow_saga(name: str, timeout_seconds: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubesaga.io/v1alpha1",
        "kind": "Saga",
        "metadata": {"name": name},
        "spec": {
            "context": {"customer": "c-1", "currency": "EUR"},
            "steps": [
                {
                    "name": "create_order",
                    "action": "ex04.orders.create",
                    "compensation": "ex04.orders.delete",
                    "input": {"sku": "LAMP-3", "quantity": 1, "unit_price": 10},
                },
                {
                    "name": "charge_payment",
                    "action": "ex04.payment.charge",
                    "compensation": "ex04.payment.refund",
                    "input": {"card": "tok", "slow_attempts": 1, "hang_seconds": 120},
                    "timeoutSeconds": timeout_seconds,
                    "retry": {"maxAttempts": 3, "backoffSeconds": 0},
                },
            ],
        },
    }


def _order_saga(name: str) -> dict[str, Any]:
    """Example 01 under another name."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "01-order-saga" / "saga.yaml").read_text())
    doc["metadata"] = {"name": name, "labels": {"test": "spread"}}
    return doc


def _apply(cluster: Cluster, namespace: str, *docs: dict[str, Any]) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)})
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write(body)
        f.flush()
        cluster.kubectl("apply", "-n", namespace, "-f", f.name)


def _wait_phase(
    cluster: Cluster, namespace: str, name: str, phase: str, timeout: int = 120
) -> None:
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        f"saga/{name}",
        f"--for=jsonpath={{.status.phase}}={phase}",
        f"--timeout={timeout}s",
    )


def _wait_payment_in_flight(cluster: Cluster, namespace: str, name: str) -> None:
    """Until the slow saga's payment attempt runs (its handler hangs for ``hang_seconds``)."""
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        f"saga/{name}",
        "--for=jsonpath={.status.steps[1].phase}=Running",
        "--timeout=60s",
    )


def test_saga_completes_after_the_operator_pod_is_deleted(cluster: Cluster, release: str) -> None:
    name = f"survives-operator-{uuid.uuid4().hex[:6]}"
    _apply(cluster, release, _slow_saga(name, timeout_seconds=15))
    # The payment attempt is in flight (its handler hangs): now take the operator away.
    _wait_payment_in_flight(cluster, release, name)
    before = cluster.get_json("pods", "-n", release, "-l", "app.kubernetes.io/component=operator")
    old = {p["metadata"]["name"] for p in before["items"]}
    cluster.kubectl("delete", "pod", "-n", release, *old, "--wait=false")
    cluster.kubectl("rollout", "status", "-n", release, f"deployment/{RELEASE}", "--timeout=120s")
    _wait_phase(cluster, release, name, "Completed")
    after = cluster.get_json("pods", "-n", release, "-l", "app.kubernetes.io/component=operator")
    assert old.isdisjoint(p["metadata"]["name"] for p in after["items"])
    saga = cluster.get_json("saga", "-n", release, name)
    charge = saga["status"]["steps"][1]
    assert charge["phase"] == "Succeeded" and charge["attempt"] == 2, charge


def test_commands_are_spread_over_three_worker_pods(cluster: Cluster, release: str) -> None:
    deployment = f"{RELEASE}-worker-order-saga"
    cluster.kubectl("scale", "-n", release, f"deployment/{deployment}", "--replicas=3")
    cluster.kubectl(
        "rollout", "status", "-n", release, f"deployment/{deployment}", "--timeout=120s"
    )
    names = [f"spread-{i}-{uuid.uuid4().hex[:4]}" for i in range(12)]
    _apply(cluster, release, *(_order_saga(n) for n in names))
    for name in names:
        _wait_phase(cluster, release, name, "Completed")
    pods = cluster.get_json("pods", "-n", release, "-l", "kubesaga.io/worker=order-saga")["items"]
    assert len(pods) == 3
    handled = {}
    for pod in pods:
        logs = cluster.kubectl("logs", "-n", release, pod["metadata"]["name"], "--tail=-1")
        handled[pod["metadata"]["name"]] = sum(
            1 for line in logs.splitlines() if "handler succeeded" in line and "spread-" in line
        )
    assert sum(handled.values()) >= 3 * len(names), handled
    assert all(count > 0 for count in handled.values()), f"a pod handled nothing: {handled}"


def test_helm_upgrade_keeps_running_sagas_going(cluster: Cluster, release: str) -> None:
    names = [f"upgrade-{i}-{uuid.uuid4().hex[:4]}" for i in range(3)]
    _apply(cluster, release, *(_slow_saga(n, timeout_seconds=10) for n in names))
    for name in names:
        _wait_payment_in_flight(cluster, release, name)
    before = cluster.get_json("pods", "-n", release)
    cluster.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        release,
        "--reuse-values",
        "--set",
        "operator.events=phases",
        "--set",
        "log.level=DEBUG",
        "--wait",
        "--timeout",
        "5m",
    )
    env = cluster.get_json("deployment", "-n", release, RELEASE)["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {"name": "KUBESAGA_EVENTS", "value": "phases"} in env
    for name in names:
        _wait_phase(cluster, release, name, "Completed", timeout=180)
    after = cluster.get_json("pods", "-n", release)
    old = {p["metadata"]["name"] for p in before["items"]}
    running = [
        p["metadata"]["name"] for p in after["items"] if "deletionTimestamp" not in p["metadata"]
    ]
    assert old.isdisjoint(running), f"pods were not replaced: {sorted(old & set(running))}"
