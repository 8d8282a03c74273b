"""Every metric, label and label value the chart's dashboard and alerts use is exposed by a
running operator, and the chart renders them into the objects Grafana and Prometheus read.

The operator runs a saga that completes, one whose compensation fails (phase Failed) and sees a
malformed result (a dead letter), so each labelled series the queries select has a sample; its
/metrics is then read with prometheus_client's parser. Query text is read with regular
expressions: enough for the selectors and ``by (...)`` clauses these files use. PromQL syntax
and when each alert fires are promtool's part (test_alert_rules.py).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubesaga import AsyncSagaClient
from kubesaga.models import SagaPhase
from kubesaga.settings import Settings
from tests.integration.chart import CHART, find, one, render
from tests.integration.harness import free_port, next_dead_letter, operator_task, worker_task
from tests.integration.scripted import scripted_worker, step
from tests.integration.test_bad_input import publish_raw

WAIT_S = 60
FILES = CHART / "files"
SELECTOR = re.compile(r"\b(kubesaga_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
BY = re.compile(r"\bby\s*\(([^)]*)\)")


def queries() -> list[str]:
    rules = [r["expr"] for g in yaml_load(FILES / "alerts.yaml")["groups"] for r in g["rules"]]
    board = json.loads((FILES / "dashboard.json").read_text())
    return rules + [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def yaml_load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def exposed(text: str) -> dict[str, dict[str, set[str]]]:
    """Sample name -> label name -> the values seen."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = out[sample.name]
            for key, value in sample.labels.items():
                labels[key].add(value)
    return out


async def test_every_metric_label_and_value_the_dashboard_and_alerts_use_is_exposed(
    operator_settings: Settings, saga_crd: object, saga_client: AsyncSagaClient, prefix: str
) -> None:
    port = free_port()
    settings = operator_settings.model_copy(
        update={"metrics_port": port, "metrics_host": "127.0.0.1"}
    )
    worker, _ = scripted_worker(prefix)
    async with operator_task(settings), worker_task(worker, settings):
        await publish_raw(settings.amqp_url, [(settings.results_queue, "junk", b"not json")])
        await next_dead_letter(settings.amqp_url, settings.dead_letter_queue)
        await saga_client.start("done", [step(prefix, "a"), step(prefix, "b")])
        failing = [step(prefix, "a", undo_fail="permanent"), step(prefix, "b", fail="permanent")]
        await saga_client.start("broken", failing)
        assert (await saga_client.wait("done", WAIT_S)).phase is SagaPhase.COMPLETED
        assert (await saga_client.wait("broken", WAIT_S)).phase is SagaPhase.FAILED
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            metrics = exposed(await response.text())

    used = 0
    for query in queries():
        names = set()
        for name, matchers in SELECTOR.findall(query):
            names.add(name)
            assert name in metrics, f"{name} (in {query!r}) is not exposed"
            for label, op, value in MATCHER.findall(matchers):
                assert label in metrics[name], f"{name} has no label {label}"
                if op == "=":
                    assert value in metrics[name][label], f"{name}{{{label}={value!r}}} never seen"
            used += 1
        for clause in BY.findall(query):
            for label in (word.strip() for word in clause.split(",")):
                assert any(label in metrics[n] for n in names), f"no {label} in {query!r}"
    assert used >= 10  # the parsing found the queries' selectors


def test_the_chart_renders_the_dashboard_rules_and_service_monitor() -> None:
    options = [
        "--set", "grafanaDashboard.enabled=true",
        "--set", "prometheusRule.enabled=true",
        "--set", "prometheusRule.labels.release=prometheus",
        "--set", "serviceMonitor.enabled=true",
    ]  # fmt: skip
    docs = render("kubesaga", *options)
    dashboard = one(docs, "ConfigMap", "kubesaga-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["kubesaga.json"]) == json.loads(
        (FILES / "dashboard.json").read_text()
    )
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml_load(FILES / "alerts.yaml")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", "kubesaga-metrics")  # the ServiceMonitor brings its Service
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = [p["name"] for p in service["spec"]["ports"]]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"] == port_names

    defaults = render("kubesaga")
    assert not find(defaults, "PrometheusRule") and not find(defaults, "ServiceMonitor")
    assert not find(defaults, "ConfigMap", "kubesaga-dashboard")
