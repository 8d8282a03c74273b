"""``kubesaga suspend|resume NAME... | -l SELECTOR | --all`` and ``kubesaga redrive NAME``.

What people on call do to a saga in production: stop it dispatching while a downstream service
is down, let it go on, and after a human fixed what made a compensation fail, run it again.
Each is one spec patch (``spec.suspend``, ``spec.redrive``) through the client, so ``kubectl
patch`` does the same; the operator's Events say what became of it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from kubesaga.cli.sagas_cmd import NamespaceOpt, _run
from kubesaga.client.saga import Saga

SelectorOpt = Annotated[
    str,
    typer.Option(
        "--selector", "-l", help="Every saga with these labels, e.g. app=shop (as kubectl -l)."
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every saga in the namespace.")]
AllNamespacesOpt = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="With -l or --all: in every namespace.")
]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Sagas by name.", show_default=False)]

CONCURRENT_PATCHES = 16
"""Patches in flight at once for ``-l``/``--all``: quick for hundreds, gentle on the apiserver."""


def pick(sagas: list[Saga], suspend: bool) -> tuple[list[Saga], list[str]]:
    """Of the sagas a selector (or --all) matched, those worth a patch, and why the rest are not.

    Suspending a saga that already ended, or resuming one that is not suspended, would only
    bump its generation for the operator to ignore; a selection skips them and says so. A saga
    named on the command line is always patched (the user asked for that one).
    """
    chosen: list[Saga] = []
    skipped: list[str] = []
    for saga in sagas:
        if suspend and saga.phase.is_final:
            skipped.append(f"{saga.name}: already ended {saga.phase.value}")
        elif suspend and saga.spec.suspend:
            skipped.append(f"{saga.name}: already suspended")
        elif not suspend and not saga.spec.suspend:
            skipped.append(f"{saga.name}: not suspended")
        else:
            chosen.append(saga)
    return chosen, skipped


def outcome(saga: Saga, suspend: bool) -> str:
    """What one patch did, as ``kubectl`` says it: a final saga stays as it ended."""
    if suspend and saga.phase.is_final:
        return (
            f"saga.kubesaga.io/{saga.name} suspend recorded, but it already ended "
            f"{saga.phase.value}: nothing to stop"
        )
    return f"saga.kubesaga.io/{saga.name} {'suspended' if suspend else 'resumed'}"


def _set_suspend(
    suspend: bool,
    names: list[str] | None,
    selector: str,
    every: bool,
    namespace: str,
    all_namespaces: bool,
) -> None:
    done = "suspended" if suspend else "resumed"
    if sum((bool(names), bool(selector), every)) != 1:
        raise typer.BadParameter("name the sagas, or pick them with -l SELECTOR, or use --all")

    async def work(client: Any) -> None:
        if names:
            targets = [(namespace, name) for name in names]
        else:
            handles = await client.list_sagas(
                namespace=namespace, all_namespaces=all_namespaces, label_selector=selector
            )
            chosen, skipped = pick([h.saga for h in handles], suspend)
            for why in skipped:
                typer.echo(f"kubesaga: left alone {why}", err=True)
            targets = [(saga.namespace, saga.name) for saga in chosen]
        if not targets:
            typer.echo(f"kubesaga: no saga to change; nothing {done}", err=True)
            return
        gate = asyncio.Semaphore(CONCURRENT_PATCHES)

        async def one(ns: str, name: str) -> None:
            async with gate:
                if suspend:
                    saga = await client.suspend(name, namespace=ns)
                else:
                    saga = await client.resume(name, namespace=ns)
            typer.echo(outcome(saga, suspend))

        await asyncio.gather(*(one(ns, name) for ns, name in targets))

    _run(work)


def suspend(
    names: NamesArg = None,
    selector: SelectorOpt = "",
    every: AllOpt = False,
    namespace: NamespaceOpt = "default",
    all_namespaces: AllNamespacesOpt = False,
) -> None:
    """Stop sagas dispatching (spec.suspend): in-flight attempts finish, nothing new starts."""
    _set_suspend(True, names, selector, every, namespace, all_namespaces)


def resume(
    names: NamesArg = None,
    selector: SelectorOpt = "",
    every: AllOpt = False,
    namespace: NamespaceOpt = "default",
    all_namespaces: AllNamespacesOpt = False,
) -> None:
    """Let suspended sagas go on from where they stood."""
    _set_suspend(False, names, selector, every, namespace, all_namespaces)


def redrive(
    name: str,
    namespace: NamespaceOpt = "default",
    wait: Annotated[bool, typer.Option(help="Wait until the saga settles again.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300,
) -> None:
    """Run the failed compensations of a saga Failed because one failed, then the rest.

    Refused, changing nothing, for a saga that cannot be redriven (Completed, Compensated,
    invalid, still running).
    """
    from kubesaga.cli.render import make_console, saga_tree

    async def work(client: Any) -> None:
        saga = await client.redrive(name, namespace=namespace)
        typer.echo(f"saga.kubesaga.io/{name} redrive {saga.spec.redrive} requested")
        if wait:
            make_console().print(saga_tree(await client.wait(name, timeout, namespace=namespace)))

    _run(work)
