"""The chart's dashboard and alerts (helm/kubesaga/files/) are well formed, and the operator's
``kubesaga_sagas_past_deadline`` gauge counts what the stuck-past-deadline alert means.

That every metric, label and label value they use is exposed by a running operator is checked
in tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from kubesaga.operator.cache import SagaCache
from kubesaga.store import SagaObject

FILES = Path(__file__).resolve().parents[2] / "helm" / "kubesaga" / "files"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load((FILES / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FILES / "dashboard.json").read_text())
    return result


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    assert set(names) == {
        "KubesagaSagaStuckPastDeadline",
        "KubesagaSagaFailed",
        "KubesagaDeadLettersRising",
        "KubesagaNoResultsConsumed",
    }


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    for rule in alerts():
        assert "kubesaga_" in rule["expr"], rule["alert"]
        assert rule["for"].endswith("m"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_dashboard_queries_kubesaga_metrics_through_its_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "kubesaga-overview"
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert "kubesaga_" in target["expr"], panel["title"]


def saga(name: str, phase: str, deadline: datetime | None) -> SagaObject:
    status: dict[str, Any] = {"phase": phase}
    if deadline is not None:
        status["deadlineAt"] = deadline.isoformat().replace("+00:00", "Z")
    return SagaObject(
        {
            "metadata": {"namespace": "ns", "name": name, "uid": name, "resourceVersion": "1"},
            "spec": {"steps": []},
            "status": status,
        }
    )


def test_past_deadline_counts_unfinished_sagas_whose_deadline_passed() -> None:
    cache = SagaCache()
    past, future = NOW - timedelta(seconds=1), NOW + timedelta(minutes=5)
    for obj in (
        saga("stuck", "Compensating", past),
        saga("also-stuck", "Running", past),
        saga("in-time", "Running", future),
        saga("finished", "Compensated", past),
        saga("failed", "Failed", past),
        saga("no-deadline", "Running", None),
    ):
        cache.offer(obj)
    assert cache.past_deadline(NOW) == 2
