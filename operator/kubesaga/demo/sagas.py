"""What both demos do once kubesaga runs: create the example sagas, follow them live, report.

The local demo (``runner.py``: processes on a local apiserver) and the cluster demo (``node.py``:
pods installed with Helm on the one-node cluster) differ only in how the operator and the workers
come to run; from the first saga on, they are the same code.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from rich.console import Console
from rich.live import Live

from kubesaga.client import Saga
from kubesaga.demo.cluster import retry_while_crd_settles
from kubesaga.demo.examples import DemoError, Example
from kubesaga.demo.processes import Child
from kubesaga.demo.view import Board, Tracked, summary_notes, summary_table
from kubesaga.models import API_GROUP, API_VERSION, PLURAL
from kubesaga.models.shard_key import saga_manifest
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
    cluster: bool = False
    """Run on the one-node cluster (``hack/cluster.sh``), installed with Helm, instead of as local
    processes on the local platform."""


@dataclass
class Run:
    """One demo run: its options, its id (a label on its sagas) and how long each part took."""

    options: DemoOptions
    console: Console
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


async def run_sagas(
    run: Run, api: client.ApiClient, examples: list[Example], children: Sequence[Child] = ()
) -> bool:
    """Create the examples' sagas, follow them to their final phase and print the summary.

    True when every saga ended in its expected phase. ``children`` are local processes whose exit
    ends the demo early with their log.
    """
    t0 = time.monotonic()
    tracked = await _create_sagas(run, api, examples)
    finished = await _follow(run, api, tracked, children)
    run.timings["sagas"] = time.monotonic() - t0
    return _report(run, tracked, finished)


def _report(run: Run, tracked: list[Tracked], finished: bool) -> bool:
    out = run.console
    out.print()
    out.print(summary_table(tracked))
    for note in summary_notes(tracked):
        out.print(f"  {note}", highlight=False)
    ok = finished and all(t.as_expected for t in tracked)
    total = time.monotonic() - run.started
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in run.timings.items())
    verdict = "[green]every saga ended as expected[/]" if ok else "[bold red]FAILED[/]"
    out.print(f"{verdict} in {total:.1f}s ({parts})")
    if not finished:
        out.print(f"[red]timed out after {run.options.timeout:g}s waiting for the sagas[/]")
    return ok


async def _create_sagas(run: Run, api: client.ApiClient, examples: list[Example]) -> list[Tracked]:
    """Create each example's saga (its saga.yaml, renamed for this run) like kubectl create."""
    objects = client.CustomObjectsApi(api)
    tracked = []
    for example in examples:
        name = f"{example.name}-{run.run_id}"
        body = saga_manifest(
            run.options.namespace,
            name,
            example.spec.to_wire(),
            {RUN_LABEL: run.run_id, EXAMPLE_LABEL: example.key},
        )
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


async def _follow(
    run: Run, api: client.ApiClient, tracked: list[Tracked], children: Sequence[Child]
) -> bool:
    """Update the board from a watch until every saga is final; False on timeout.

    Ends early with a DemoError when one of the ``children`` exits.
    """
    by_name = {t.name: t for t in tracked}
    board = Board(tracked)
    exits = [asyncio.ensure_future(_exit_of(child)) for child in children]
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
    for child, task in zip(children, exits, strict=True):
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
            _update(by_name, raw, live)
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


def _update(by_name: Mapping[str, Tracked], raw: Any, live: Live) -> None:
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
