"""The local demo: platform, CRD, the operator and workers as processes, then the sagas.

``run_demo`` is the entry point of both demos; with ``--cluster`` it hands over to ``node.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from kubesaga.client import AsyncSagaClient
from kubesaga.demo.cluster import apply_crd, ensure_namespace
from kubesaga.demo.examples import Example, find_repo, load_examples, select_examples
from kubesaga.demo.node import run_on_node
from kubesaga.demo.platform import Platform, start_local, stop_local, use_existing
from kubesaga.demo.processes import Child, child_env
from kubesaga.demo.sagas import DemoOptions, Run, run_sagas

__all__ = ["DemoOptions", "run_demo"]


@dataclass
class LocalRun(Run):
    """What one local demo run started, so that it stops exactly that."""

    platform: Platform | None = None
    children: list[Child] = field(default_factory=list)
    logs: Path | None = None


async def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; the exit code is 0 when every saga ended in its expected phase."""
    if options.cluster:
        return await run_on_node(options, console or Console())
    run = LocalRun(options, console or Console())
    code: int | None = None
    try:
        code = await _run(run)
        return code
    finally:
        if code is None or not options.keep:
            await _cleanup(run)
            if code == 0 and run.logs is not None:  # logs are kept when something went wrong
                shutil.rmtree(run.logs, ignore_errors=True)


async def _run(run: LocalRun) -> int:
    out, options = run.console, run.options
    t0 = run.started
    repo = find_repo(options.repo)
    examples = select_examples(load_examples(repo / "examples"), options.only)

    run.platform = use_existing()
    if run.platform is not None:
        out.print(
            "[bold]Platform:[/] KUBESAGA_USE_EXISTING=1, using KUBECONFIG and KUBESAGA_AMQP_URL"
        )
    else:
        out.print(
            "[bold]Starting the local platform[/] (hack/testenv.sh up: etcd, kube-apiserver, "
            "RabbitMQ on 127.0.0.1). The first run builds kube-apiserver and etcd with Go: "
            "several minutes; later runs take seconds."
        )
        run.platform = await start_local(repo / "hack" / "testenv.sh")
    run.timings["platform"] = time.monotonic() - t0
    platform = run.platform

    t1 = time.monotonic()
    saga_client = await AsyncSagaClient.connect(platform.kubeconfig, options.namespace)
    api = saga_client.api
    try:
        out.print("[bold]Installing the Saga CRD[/] (server-side apply, waiting for Established)")
        await apply_crd(api)
        await ensure_namespace(api, options.namespace)
        _start_processes(run, repo, examples)
        run.timings["setup"] = time.monotonic() - t1

        ok = await run_sagas(run, api, examples, run.children)
    finally:
        await saga_client.close()
    if run.options.keep:
        _print_keep_instructions(run, f"{examples[0].name}-{run.run_id}")
    return 0 if ok else 1


def _start_processes(run: LocalRun, repo: Path, examples: list[Example]) -> None:
    assert run.platform is not None
    logs = run.logs = Path(tempfile.gettempdir()) / f"kubesaga-demo-{run.run_id}"
    env = child_env(
        run.platform.kubeconfig, run.platform.amqp_url, run.options.namespace, "kubesaga-demo"
    )
    operator = Child("operator", ["operator"], logs / "operator.log")
    run.children.append(operator)
    operator.start(env, repo)
    for example in examples:
        worker = Child(
            f"worker {example.key}",
            ["worker", "handlers:worker", "--app-dir", str(example.folder), "--grace", "5"],
            logs / f"worker-{example.key}.log",
        )
        run.children.append(worker)
        worker.start(env, repo)
    run.console.print(
        f"[bold]Started[/] the operator (watching namespace {run.options.namespace}) and "
        f"{len(examples)} workers as local processes; logs in {logs}"
    )


def _print_keep_instructions(run: LocalRun, first: str) -> None:
    assert run.platform is not None
    ns = run.options.namespace
    pids = " ".join(str(c.pid) for c in run.children)
    lines = [
        "",
        "[bold]--keep: everything is still running.[/] Try:",
        f"  export KUBECONFIG={run.platform.kubeconfig}",
        f"  kubectl get sagas -n {ns}",
        f"  kubesaga get {first} -n {ns}",
        f"  kubectl get sagas -n {ns} -o yaml          # the full status of every step",
        f"  kubesaga start -f examples/01-order-saga/saga.yaml -n {ns} --wait",
        f"  kubesaga ui -n {ns}                    # watch them in a browser: http://127.0.0.1:8090/",
        "Stop it:",
        f"  kill {pids}                   # the operator and the workers",
    ]
    if run.platform.testenv is not None:
        lines.append(f"  {run.platform.down_command()}   # the platform")
    for line in lines:
        run.console.print(line, highlight=False)


async def _cleanup(run: LocalRun) -> None:
    """Stop what this run started: workers and operator, then the platform if it started it."""
    if run.children:
        run.console.print("[bold]Stopping[/] the operator and the workers")
        results = await asyncio.gather(*(c.stop() for c in run.children), return_exceptions=True)
        for child, result in zip(run.children, results, strict=True):
            if isinstance(result, BaseException):
                run.console.print(f"[red]stopping the {child.name} failed: {result!r}[/]")
    if run.platform is not None and run.platform.started_here:
        run.console.print("[bold]Stopping the local platform[/] (hack/testenv.sh down)")
        with contextlib.suppress(Exception):
            await stop_local(run.platform)
