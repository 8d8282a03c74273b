"""``kubesaga start -f``, ``kubesaga get [NAME]``, ``kubesaga compensate NAME``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the saga.")]
T = TypeVar("T")


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(client)`` with a connected AsyncSagaClient; its errors exit with their message."""
    from kubesaga.client import AsyncSagaClient, SagaClientError

    async def main() -> T:
        client = await AsyncSagaClient.connect()
        async with client:
            return await work(client)

    try:
        return asyncio.run(main())
    except RuntimeError as error:
        typer.echo(f"kubesaga: {error}", err=True)
        raise typer.Exit(2) from error
    except SagaClientError as error:
        typer.echo(f"kubesaga: {error}", err=True)
        raise typer.Exit(1) from error


def start(
    file: Annotated[Path, typer.Option("--file", "-f", help="Saga manifest(s) in YAML.")],
    namespace: NamespaceOpt = "default",
    wait: Annotated[bool, typer.Option(help="Wait until each saga reaches a final phase.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300,
) -> None:
    """Create the Sagas in FILE (like kubectl create -f), optionally waiting for them."""
    import yaml
    from pydantic import ValidationError

    from kubesaga.cli.render import make_console, saga_tree
    from kubesaga.models import SagaSpec

    docs = [d for d in yaml.safe_load_all(file.read_text(encoding="utf-8")) if d]
    manifests: list[tuple[str, str, SagaSpec]] = []
    for doc in docs:
        if doc.get("kind") != "Saga":
            typer.echo(f"kubesaga: skipping a {doc.get('kind')!r} document", err=True)
            continue
        meta = doc.get("metadata") or {}
        try:
            spec = SagaSpec.model_validate(doc.get("spec") or {})
        except ValidationError as error:
            typer.echo(f"kubesaga: saga {meta.get('name')!r} is invalid:\n{error}", err=True)
            raise typer.Exit(1) from error
        manifests.append((meta.get("namespace") or namespace, meta["name"], spec))

    async def work(client: Any) -> None:
        console = make_console()
        for ns, name, spec in manifests:
            handle = await client.create(name, spec, namespace=ns)
            # as kubectl apply says it: starting the same saga again starts nothing
            done = "created" if handle.created else "unchanged (it exists with the same spec)"
            console.print(f"saga.kubesaga.io/{name} {done}")
        if wait:
            finals = await asyncio.gather(
                *(client.wait(name, timeout, namespace=ns) for ns, name, _ in manifests)
            )
            for saga in finals:
                console.print(saga_tree(saga))

    _run(work)


def get(
    name: Annotated[str | None, typer.Argument(help="A saga; omit to list them.")] = None,
    namespace: NamespaceOpt = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
) -> None:
    """Show one saga as a tree of steps, or list sagas as a table."""
    from kubesaga.cli.render import make_console, saga_table, saga_tree

    async def work(client: Any) -> None:
        console = make_console()
        if name:
            console.print(saga_tree((await client.get(name, namespace=namespace)).saga))
        else:
            sagas = await client.list_sagas(namespace=namespace, all_namespaces=all_namespaces)
            console.print(saga_table([handle.saga for handle in sagas]))

    _run(work)


def compensate(name: str, namespace: NamespaceOpt = "default") -> None:
    """Ask the operator to undo a saga (running or completed)."""

    async def work(client: Any) -> None:
        await client.compensate(name, namespace=namespace)
        typer.echo(f"saga.kubesaga.io/{name} compensation requested")

    _run(work)
