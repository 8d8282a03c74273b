"""One source for every setting: Settings, and the files and flags generated from it.

Each committed artefact (values.yaml, values.schema.json, docs/settings.md) must equal what the
models render now; the other tests check what the generation promises.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kubesaga.cli import app
from kubesaga.schema.chart import (
    VALUES_PATH,
    VALUES_SCHEMA_PATH,
    render_values_schema,
    render_values_yaml,
)
from kubesaga.schema.crd import MIN_KUBERNETES
from kubesaga.schema.settings_doc import SETTINGS_DOC_PATH, chart_values, render_settings_doc
from kubesaga.schema.values import ChartValues
from kubesaga.settings import OPERATOR, WORKER, Settings, default_of, env_name, use_of

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

GENERATED = {
    VALUES_PATH: (render_values_yaml, "kubesaga chart-values"),
    VALUES_SCHEMA_PATH: (render_values_schema, "kubesaga chart-values"),
    SETTINGS_DOC_PATH: (render_settings_doc, f"kubesaga settings-doc -o {SETTINGS_DOC_PATH}"),
}


@pytest.mark.parametrize("path", GENERATED)
def test_committed_file_matches_the_models(path: str) -> None:
    render, command = GENERATED[path]
    committed = (REPO_ROOT / path).read_text(encoding="utf-8")
    generated = render()
    if committed != generated:
        diff = difflib.unified_diff(
            committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm=""
        )
        pytest.fail(
            f"{path} is out of date; run `{command}` and commit the result. "
            "Difference (first 40 lines):\n" + "\n".join(list(diff)[:40]),
            pytrace=False,
        )


def test_every_setting_says_who_reads_it() -> None:
    for name, field in Settings.model_fields.items():
        assert set(use_of(field).by) <= {OPERATOR, WORKER} and use_of(field).by, name
        assert field.description, f"{name} has no docstring"


def test_every_setting_reaches_the_chart() -> None:
    """A setting added to Settings must get a chart value (or say how the chart sets it)."""
    assert set(chart_values()) == set(Settings.model_fields)


def test_values_yaml_holds_the_models_defaults_and_the_settings_defaults() -> None:
    values = yaml.safe_load(render_values_yaml())
    assert values == ChartValues().model_dump(by_alias=True, exclude={"global_"})
    assert values["operator"]["prefetch"] == default_of("operator_prefetch")
    assert values["workerDefaults"]["concurrency"] == default_of("worker_concurrency")
    assert values["workerDefaults"]["graceSeconds"] == default_of("worker_grace_seconds")
    assert values["amqp"]["resultsQueue"] == default_of("results_queue")
    assert values["log"]["format"] == "json" != default_of("log_format")  # the chart's choice


def _nodes(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.items():
            found += _nodes(child, f"{path}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _nodes(child, f"{path}/{i}")
    return found


def test_schema_refuses_unknown_keys_of_the_charts_own_objects() -> None:
    schema = json.loads(render_values_schema())
    assert schema["additionalProperties"] is False
    closed = {name for name, d in schema["$defs"].items() if d.get("additionalProperties") is False}
    assert {"Amqp", "Operator", "Worker", "WorkerDefaults", "Metrics", "Log", "Image"} <= closed
    # Kubernetes objects passed through stay open: the apiserver validates them
    assert schema["$defs"]["SecurityContext"]["additionalProperties"] is True
    assert "global" in schema["properties"]  # Helm sets it for subcharts


def test_a_setting_value_carries_the_settings_type_bounds_and_variable() -> None:
    schema = json.loads(render_values_schema())
    prefetch = schema["$defs"]["Operator"]["properties"]["prefetch"]
    assert (prefetch["type"], prefetch["minimum"], prefetch["maximum"]) == ("integer", 1, 10_000)
    assert prefetch["description"].endswith(f"({env_name('operator_prefetch')})")
    events = schema["$defs"]["Operator"]["properties"]["events"]
    assert events["enum"] == ["all", "phases", "none"]
    assert not [path for path, node in _nodes(schema) if "x-kubesaga-setting" in node]
    assert not [path for path, node in _nodes(schema) if "title" in node]


def test_the_charts_kube_version_is_what_the_crd_needs() -> None:
    chart = yaml.safe_load((REPO_ROOT / "helm/kubesaga/Chart.yaml").read_text(encoding="utf-8"))
    major, minor = MIN_KUBERNETES
    assert chart["kubeVersion"] == f">={major}.{minor}.0-0"
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"Kubernetes {major}\.{minor}\+", readme)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (command, field)
        for field, info in Settings.model_fields.items()
        for command in use_of(info).by
        if use_of(info).flags
    ],
)
def test_each_flag_is_offered_with_the_settings_text_and_variable(command: str, field: str) -> None:
    outcome = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert outcome.exit_code == 0, outcome.output
    text = " ".join(outcome.output.replace("│", " ").split())
    for flag in use_of(Settings.model_fields[field]).flags:
        assert flag in text, (command, flag)
    assert env_name(field) in text


def test_cli_writes_the_chart_files(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["chart-values", "-d", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "values.yaml").read_text(encoding="utf-8") == render_values_yaml()
    assert (tmp_path / "values.schema.json").read_text(encoding="utf-8") == render_values_schema()


def test_settings_are_read_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESAGA_OPERATOR_PREFETCH", "5")
    monkeypatch.setenv("KUBESAGA_WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("KUBESAGA_PREFETCH", "999")  # the old, ambiguous name means nothing now
    monkeypatch.setenv("KUBESAGA_LOG_LEVEL", "debug")
    settings = Settings()
    assert (settings.operator_prefetch, settings.worker_concurrency) == (5, 3)
    assert settings.log_level == "DEBUG"
