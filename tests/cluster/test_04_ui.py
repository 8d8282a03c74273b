"""The UI as the chart runs it (``ui.enabled``): a pod from the production image that passes its
probes under Pod Security ``restricted`` (non-root, read-only root filesystem), and a Service
that serves the pages and the live list of the sagas the examples left in the namespace."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.cluster.kube import CHART, RELEASE, Cluster

UI = "app.kubernetes.io/component=ui"
READ_S = 30


def _first_event(url: str) -> tuple[str, Any]:
    """The first server-sent event of ``url``: its name and JSON data."""
    with urllib.request.urlopen(url, timeout=READ_S) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                return name, json.loads(line.split(":", 1)[1])
    raise AssertionError(f"{url} ended without an event")


def test_the_ui_runs_as_a_pod_and_its_service_lists_the_sagas(
    cluster: Cluster, release: str
) -> None:
    cluster.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", release, "--reuse-values",
        "--set", "ui.enabled=true", "--wait", "--timeout", "3m",
    )  # fmt: skip
    try:
        cluster.kubectl(
            "wait", "-n", release, "pods", "-l", UI, "--for=condition=Ready", "--timeout=120s"
        )
        (service,) = cluster.get_json("services", "-n", release, "-l", UI)["items"]
        base = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
        with urllib.request.urlopen(f"{base}/", timeout=READ_S) as page:
            assert page.status == 200
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        name, data = _first_event(f"{base}/api/stream")
        assert name == "snapshot", (name, data)
        sagas = {row["name"] for row in data["sagas"] if row["namespace"] == release}
        expected = set(
            cluster.kubectl("get", "sagas", "-n", release, "-o", "name")
            .replace("saga.kubesaga.io/", "")
            .split()
        )
        assert expected and sagas == expected, (sagas, expected)
    finally:
        cluster.helm(
            "upgrade", RELEASE, str(CHART), "--namespace", release, "--reuse-values",
            "--set", "ui.enabled=false", "--wait", "--timeout", "3m",
        )  # fmt: skip
