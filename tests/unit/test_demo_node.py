"""The cluster demo's pure parts: options, the node's exports, the helm and kubectl commands."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import kubesaga.demo
from kubesaga.cli.main import app
from kubesaga.demo import DemoError, DemoOptions
from kubesaga.demo import node as node_module
from kubesaga.demo.node import (
    Node,
    cleanup_commands,
    install_command,
    namespace_commands,
    node_env,
)
from kubesaga.demo.sagas import Run

REPO = Path("/src/kubesaga")
UP_STDOUT = (
    "export KUBECONFIG=/root/.cache/kubesaga/cluster/kubeconfig\n"
    "export KUBESAGA_CLUSTER_AMQP_URL=amqp://kubesaga:pw@rabbitmq.rabbitmq:5672/kubesaga\n"
    'export PATH=/root/.cache/kubesaga/cluster/bin:"$PATH"\n'
)


def _options_of(args: list[str], monkeypatch: pytest.MonkeyPatch) -> DemoOptions:
    seen: list[DemoOptions] = []

    async def fake_run_demo(options: DemoOptions, console: Console | None = None) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(kubesaga.demo, "run_demo", fake_run_demo)
    result = CliRunner().invoke(app, ["demo", *args])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_cluster_keep_and_examples_reach_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    options = _options_of(["--cluster", "--keep", "-e", "01", "-n", "mine"], monkeypatch)
    assert (options.cluster, options.keep, options.only, options.namespace) == (
        True,
        True,
        ("01",),
        "mine",
    )


def test_the_default_demo_is_the_local_one(monkeypatch: pytest.MonkeyPatch) -> None:
    options = _options_of([], monkeypatch)
    assert (options.cluster, options.keep, options.namespace) == (False, False, "kubesaga-demo")


def test_the_node_exports_extend_path_and_keep_the_environment() -> None:
    env = node_env(UP_STDOUT, {"PATH": "/usr/bin:/bin", "HOME": "/root"})
    assert env == {
        "HOME": "/root",
        "KUBECONFIG": "/root/.cache/kubesaga/cluster/kubeconfig",
        "KUBESAGA_CLUSTER_AMQP_URL": "amqp://kubesaga:pw@rabbitmq.rabbitmq:5672/kubesaga",
        "PATH": "/root/.cache/kubesaga/cluster/bin:/usr/bin:/bin",
    }


def test_missing_node_exports_are_one_clear_error() -> None:
    with pytest.raises(DemoError, match="no KUBESAGA_CLUSTER_AMQP_URL, PATH export"):
        node_env("export KUBECONFIG=/k\n", {"PATH": "/bin"})


def test_the_namespace_is_created_then_labelled_pod_security_restricted() -> None:
    label = [
        "kubectl",
        "label",
        "--overwrite",
        "namespace",
        "demo",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ]
    assert namespace_commands("demo", exists=False) == [
        ["kubectl", "create", "namespace", "demo"],
        label,
    ]
    assert namespace_commands("demo", exists=True) == [label]


def test_the_chart_is_installed_with_the_workers_values_and_the_in_cluster_broker() -> None:
    command = install_command(REPO, "demo", "amqp://u:p@rabbitmq.rabbitmq:5672/v")
    assert command[:5] == [
        "helm",
        "upgrade",
        "--install",
        "kubesaga",
        "/src/kubesaga/helm/kubesaga",
    ]

    def after(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert after("--namespace") == "demo"
    assert after("-f") == "/src/kubesaga/helm/kubesaga/ci/workers-values.yaml"
    assert after("--timeout") == "5m"
    sets = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    assert sets == [
        "amqp.url=amqp://u:p@rabbitmq.rabbitmq:5672/v",
        "operator.namespaces={demo}",
        "amqp.resultsQueue=demo.results",
    ]
    assert {"--create-namespace", "--wait"} <= set(command)


def test_cleanup_uninstalls_the_release_then_deletes_the_namespace() -> None:
    uninstall, delete = cleanup_commands("demo")
    assert uninstall[:5] == ["helm", "uninstall", "kubesaga", "--namespace", "demo"]
    assert delete[:4] == ["kubectl", "delete", "namespace", "demo"]


def _record_commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    ran: list[list[str]] = []

    async def fake_exec(
        command: Sequence[str], env: Any, *, timeout: float, stderr: Any = None
    ) -> subprocess.CompletedProcess[str]:
        ran.append(list(command))
        return subprocess.CompletedProcess(list(command), 0, "", "")

    monkeypatch.setattr(node_module, "_exec", fake_exec)
    return ran


@pytest.mark.parametrize("started_here", [True, False])
async def test_cleanup_stops_the_node_only_when_the_demo_started_it(
    monkeypatch: pytest.MonkeyPatch, started_here: bool
) -> None:
    ran = _record_commands(monkeypatch)
    node = Node(REPO / "hack" / "cluster.sh", {"PATH": "/bin"}, started_here=started_here)
    run = Run(DemoOptions(namespace="demo", cluster=True), Console(quiet=True))
    await node_module._cleanup(run, node)
    assert ran[:2] == cleanup_commands("demo")
    assert (["/src/kubesaga/hack/cluster.sh", "down"] in ran) is started_here


async def test_without_root_the_cluster_demo_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = _record_commands(monkeypatch)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    run = Run(DemoOptions(cluster=True), Console(quiet=True))
    with pytest.raises(DemoError, match="needs root"):
        await node_module._start_node(run, REPO / "hack" / "cluster.sh")
    assert ran == []
