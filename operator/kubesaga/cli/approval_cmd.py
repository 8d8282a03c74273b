"""``kubesaga approve|reject NAME STEP [--reason TEXT]``: answer a saga's approval step."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kubesaga.cli.sagas_cmd import NamespaceOpt, _run

ReasonOpt = Annotated[
    str, typer.Option("--reason", "-r", help="Why: recorded in status and the step's output.")
]
ByOpt = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Answer for someone else (a system acting for a person); default: your user name.",
    ),
]


def approve(
    name: Annotated[str, typer.Argument(help="The saga.")],
    step: Annotated[str, typer.Argument(help="Its approval step, waiting for an answer.")],
    reason: ReasonOpt = "",
    by: ByOpt = None,
    namespace: NamespaceOpt = "default",
) -> None:
    """Approve a waiting approval step: it succeeds and the saga goes on."""
    _answer(name, step, True, reason, by, namespace)


def reject(
    name: Annotated[str, typer.Argument(help="The saga.")],
    step: Annotated[str, typer.Argument(help="Its approval step, waiting for an answer.")],
    reason: ReasonOpt = "",
    by: ByOpt = None,
    namespace: NamespaceOpt = "default",
) -> None:
    """Reject a waiting approval step: it fails and the saga compensates what it did."""
    _answer(name, step, False, reason, by, namespace)


def _answer(
    name: str, step: str, approved: bool, reason: str, by: str | None, namespace: str
) -> None:
    verb = "approved" if approved else "rejected"

    async def work(client: Any) -> None:
        answer = client.approve if approved else client.reject
        saga = await answer(name, step, reason, by=by, namespace=namespace)
        given = saga.spec.answer(step)
        who = f" by {given.by}" if given is not None else ""
        typer.echo(f"saga.kubesaga.io/{name} step {step} {verb}{who}")

    _run(work)
