"""The demo from start to finish: platform, CRD, processes, sagas, live view, summary, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from rich.console import Console
from rich.live import Live

from kubesaga.client import Saga, SagaClient
from kubesaga.demo.cluster import apply_crd, ensure_namespace, retry_while_crd_settles
from kubesaga.demo.examples import DemoError, Example, find_repo, load_examples
from kubesaga.demo.platform import Platform, start_local, stop_local, use_existing
from kubesaga.demo.processes import Child, child_env
from kubesaga.demo.view import Board, Tracked, summary_notes, summary_table
from kubesaga.models import API_GROUP, API_VERSION, KIND, PLURAL
from kubesaga.store import SagaObject
from kubesaga.store.watching import watch_until

RUN_LABEL = "kubesaga.io/demo-run"
EXAMPLE_LABEL = "kubesaga.io/example"


@dataclass(frozen=True)
class DemoOptions:
    namespace: str = "kubesaga-demo"
    timeout: float = 180.0
    """Seconds the sagas get to reach a final phase (the platform's start is not counted)."""
    keep: bool = False
    repo: Path | None = None
    only: tuple[str, ...] = ()
    """Run only these examples (folder names or their number prefixes); empty: all."""


@dataclass
class Run:
    """What one demo run started, so that it stops exactly that."""

    options: DemoOptions
    console: Console
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    platform: Platform | None = None
    children: list[Child] = field(default_factory=list)
    logs: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


async def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; the exit code is 0 when every saga ended in its expected phase."""
    run = Run(options, console or Console())
    code: int | None = None
    try:
        code = await _run(run)
        return code
    finally:
        if code is None or not options.keep:
            await _cleanup(run)
            if code == 0 and run.logs is not None:  # logs are kept when something went wrong
                shutil.rmtree(run.logs, ignore_errors=True)


async def _run(run: Run) -> int:
    out, options = run.console, run.options
    t0 = time.monotonic()
    repo = find_repo(options.repo)
    examples = _select(load_examples(repo / "examples"), options.only)

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
    saga_client = await SagaClient.connect(platform.kubeconfig, options.namespace)
    api = saga_client.api
    try:
        out.print("[bold]Installing the Saga CRD[/] (server-side apply, waiting for Established)")
        await apply_crd(api)
        await ensure_namespace(api, options.namespace)
        _start_processes(run, repo, examples)
        run.timings["setup"] = time.monotonic() - t1

        t2 = time.monotonic()
        tracked = await _create_sagas(run, api, examples)
        finished = await _follow(run, api, tracked)
        run.timings["sagas"] = time.monotonic() - t2
    finally:
        await saga_client.close()

    out.print()
    out.print(summary_table(tracked))
    for note in summary_notes(tracked):
        out.print(f"  {note}", highlight=False)
    ok = finished and all(t.as_expected for t in tracked)
    total = time.monotonic() - t0
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in run.timings.items())
    verdict = "[green]every saga ended as expected[/]" if ok else "[bold red]FAILED[/]"
    out.print(f"{verdict} in {total:.1f}s ({parts})")
    if not finished:
        out.print(f"[red]timed out after {options.timeout:g}s waiting for the sagas[/]")
    if run.options.keep:
        _print_keep_instructions(run, tracked)
    return 0 if ok else 1


def _select(examples: list[Example], only: tuple[str, ...]) -> list[Example]:
    if not only:
        return examples
    chosen = [e for e in examples if any(e.key == o or e.key.startswith(f"{o}-") for o in only)]
    if not chosen:
        known = ", ".join(e.key for e in examples)
        raise DemoError(f"no example matches {', '.join(only)}; the examples are: {known}")
    return chosen


def _start_processes(run: Run, repo: Path, examples: list[Example]) -> None:
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


async def _create_sagas(run: Run, api: client.ApiClient, examples: list[Example]) -> list[Tracked]:
    """Create each example's saga (its saga.yaml, renamed for this run) like kubectl create."""
    objects = client.CustomObjectsApi(api)
    tracked = []
    for example in examples:
        name = f"{example.name}-{run.run_id}"
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": run.options.namespace,
                "labels": {RUN_LABEL: run.run_id, EXAMPLE_LABEL: example.key},
            },
            "spec": example.spec.to_wire(),
        }
        try:
            await retry_while_crd_settles(
                objects.create_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                run.options.namespace,
                PLURAL,
                body,
            )
        except ApiException as error:
            detail = error.body.decode() if isinstance(error.body, bytes) else error.body
            raise DemoError(f"creating saga {name} failed: {error.status} {detail}") from error
        tracked.append(Tracked(example, name))
    run.console.print(
        f"[bold]Created[/] {len(tracked)} sagas in namespace {run.options.namespace} "
        f"(run {run.run_id}); following them with a watch"
    )
    return tracked


async def _follow(run: Run, api: client.ApiClient, tracked: list[Tracked]) -> bool:
    """Update the board from a watch until every saga is final; False on timeout.

    Ends early with a DemoError when the operator or a worker exits.
    """
    by_name = {t.name: t for t in tracked}
    board = Board(tracked)
    exits = [asyncio.ensure_future(_exit_of(child)) for child in run.children]
    out = run.console
    with Live(board, console=out, refresh_per_second=4, transient=True) as live:
        watching = asyncio.ensure_future(_watch(run, api, by_name, live))
        try:
            async with asyncio.timeout(run.options.timeout):
                done, _ = await asyncio.wait(
                    [watching, *exits], return_when=asyncio.FIRST_COMPLETED
                )
        except TimeoutError:
            return False
        finally:
            for task in [watching, *exits]:
                task.cancel()
            await asyncio.gather(watching, *exits, return_exceptions=True)
    if watching in done:
        watching.result()
        return True
    for child, task in zip(run.children, exits, strict=True):
        if task in done and not task.cancelled():
            raise DemoError(
                f"the {child.name} process exited (code {task.result()}) before the sagas "
                f"finished; the end of its log ({child.log_path}):\n{child.log_tail()}"
            )
    return False


async def _exit_of(child: Child) -> int:
    return await asyncio.shield(child.exited)


async def _watch(run: Run, api: client.ApiClient, by_name: dict[str, Tracked], live: Live) -> None:
    """Follow the run's sagas (list, then watch; ``store.watching``) until all are settled."""
    objects = client.CustomObjectsApi(api)
    await retry_while_crd_settles(  # the first list may meet a CRD that was just Established
        objects.list_namespaced_custom_object,
        API_GROUP,
        API_VERSION,
        run.options.namespace,
        PLURAL,
        limit=1,
    )

    def all_settled(kind: str, raw: Any) -> bool | None:
        if kind in ("ADDED", "MODIFIED"):
            _update(run, by_name, raw, live)
        return True if all(t.settled for t in by_name.values()) else None

    await watch_until(
        objects.list_namespaced_custom_object,
        API_GROUP,
        API_VERSION,
        run.options.namespace,
        PLURAL,
        check=all_settled,
        label_selector=f"{RUN_LABEL}={run.run_id}",
        watch_timeout=60,
    )


def _update(run: Run, by_name: Mapping[str, Tracked], raw: Any, live: Live) -> None:
    obj = SagaObject(raw)
    tracked = by_name.get(obj.name)
    if tracked is None:
        return
    before = tracked.summary_line()
    tracked.saga = Saga.of(obj)
    if tracked.settled and tracked.settled_after is None:
        tracked.settled_after = time.monotonic() - tracked.created
    after = tracked.summary_line()
    if after != before:
        stamp = f"{tracked.elapsed():5.1f}s"
        live.console.print(f"[dim]{stamp}[/] {tracked.example.key:<17} {after}", highlight=False)
    live.refresh()


def _print_keep_instructions(run: Run, tracked: list[Tracked]) -> None:
    assert run.platform is not None
    ns = run.options.namespace
    pids = " ".join(str(c.pid) for c in run.children)
    first = tracked[0].name if tracked else "NAME"
    lines = [
        "",
        "[bold]--keep: everything is still running.[/] Try:",
        f"  export KUBECONFIG={run.platform.kubeconfig}",
        f"  kubectl get sagas -n {ns}",
        f"  kubesaga get {first} -n {ns}",
        f"  kubectl get sagas -n {ns} -o yaml          # the full status of every step",
        f"  kubesaga start -f examples/01-order-saga/saga.yaml -n {ns} --wait",
        "Stop it:",
        f"  kill {pids}                   # the operator and the workers",
    ]
    if run.platform.testenv is not None:
        lines.append(f"  {run.platform.down_command()}   # the platform")
    for line in lines:
        run.console.print(line, highlight=False)


async def _cleanup(run: Run) -> None:
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
