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


async def _targets(
    client: Any,
    names: list[str],
    selector: str,
    every: bool,
    namespace: str,
    all_namespaces: bool,
) -> list[tuple[str, str]]:
    """(namespace, name) of each saga the command line picks: names, a selector, or all."""
    if names:
        return [(namespace, name) for name in names]
    handles = await client.list_sagas(
        namespace=namespace, all_namespaces=all_namespaces, label_selector=selector
    )
    return [(h.namespace, h.name) for h in handles]


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
        targets = await _targets(client, names or [], selector, every, namespace, all_namespaces)
        if not targets:
            typer.echo(f"kubesaga: no saga matches; nothing {done}", err=True)
            return
        gate = asyncio.Semaphore(CONCURRENT_PATCHES)

        async def one(ns: str, name: str) -> None:
            async with gate:
                if suspend:
                    await client.suspend(name, namespace=ns)
                else:
                    await client.resume(name, namespace=ns)
            typer.echo(f"saga.kubesaga.io/{name} {done}")

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
