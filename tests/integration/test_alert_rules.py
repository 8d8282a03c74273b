"""The chart's alerts (helm/kubesaga/files/alerts.yaml) under ``promtool``: valid rules, and each
fires on the series it is meant for, at the time its ``for`` says, and stays quiet otherwise.

promtool is built from the Go module proxy by ``hack/testenv.sh promtool-path`` (cached like
helm). The unit tests are written here, in Python, so the expected annotations are read from the
rules file (the descriptions) or spelled out where a template renders (the summaries).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.integration.chart import CHART, built_tool

RULES = CHART / "files" / "alerts.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [built_tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def description(alert: str) -> str:
    doc = yaml.safe_load(RULES.read_text())
    rule = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == alert)
    return str(rule["annotations"]["description"])


def fires(alert: str, at: str, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [
            {
                "exp_labels": labels,
                "exp_annotations": {"summary": summary, "description": description(alert)},
            }
        ],
    }


def quiet(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


STUCK = "KubesagaSagaStuckPastDeadline"
FAILED = "KubesagaSagaFailed"
DEAD = "KubesagaDeadLettersRising"
SILENT = "KubesagaNoResultsConsumed"

CASES: list[dict[str, Any]] = [
    {
        "name": "a saga past its deadline alerts once it stayed so 15 minutes (two replicas)",
        "input_series": [
            {"series": 'kubesaga_sagas_past_deadline{pod="op-0"}', "values": "0 1x30"},
            {"series": 'kubesaga_sagas_past_deadline{pod="op-1"}', "values": "0 1x30"},
        ],
        "alert_rule_test": [
            quiet(STUCK, "10m"),
            fires(
                STUCK,
                "20m",
                "1 saga(s) still unfinished 15 minutes after their deadline",
                severity="warning",
            ),
        ],
    },
    {
        "name": "a Failed saga alerts; Completed ones do not",
        "input_series": [
            {"series": 'kubesaga_sagas{phase="Completed"}', "values": "5x10"},
            {"series": 'kubesaga_sagas{phase="Failed"}', "values": "0 0 1x10"},
        ],
        "alert_rule_test": [
            quiet(FAILED, "2m"),
            fires(
                FAILED,
                "5m",
                "1 saga(s) Failed: a compensation failed, a human must look",
                severity="critical",
            ),
        ],
    },
    {
        "name": "a dead letter alerts at once, per queue, and clears 15 minutes later",
        "input_series": [
            {
                "series": 'kubesaga_dead_letters_total{queue="kubesaga.results"}',
                "values": "0x3 1x40",
            },
        ],
        "alert_rule_test": [
            quiet(DEAD, "2m"),
            fires(
                DEAD,
                "5m",
                "messages dead-lettered from kubesaga.results in the last 15 minutes",
                severity="warning",
                queue="kubesaga.results",
            ),
            quiet(DEAD, "30m"),
        ],
    },
    {
        "name": "commands without any result alert, even before a first result ever existed",
        "input_series": [
            {"series": 'kubesaga_commands_published_total{kind="execute"}', "values": "0+5x30"},
        ],
        "alert_rule_test": [
            quiet(SILENT, "4m"),
            fires(
                SILENT,
                "8m",
                "commands are published but no result came back for 10 minutes",
                severity="critical",
            ),
        ],
    },
    {
        "name": "commands answered by results do not alert",
        "input_series": [
            {"series": 'kubesaga_commands_published_total{kind="execute"}', "values": "0+5x30"},
            {"series": 'kubesaga_results_total{verdict="applied"}', "values": "0+5x30"},
        ],
        "alert_rule_test": [quiet(SILENT, "8m"), quiet(SILENT, "20m")],
    },
]


def test_the_rules_are_valid() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def test_each_alert_fires_when_meant_to_and_only_then(tmp_path: Path) -> None:
    tests = [{"interval": "1m", **case} for case in CASES]
    doc = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = promtool("test", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = {t["alertname"] for case in CASES for t in case["alert_rule_test"]}
    assert alerts == {STUCK, FAILED, DEAD, SILENT}  # every alert is exercised
