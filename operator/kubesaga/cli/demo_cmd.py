"""``kubesaga demo``: the examples on a local platform (or, with --cluster, as pods on the one-node
cluster), with live progress and a summary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer


def demo(
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Run the examples as pods on the one-node cluster (hack/cluster.sh; root), "
            "installed with Helm, instead of as local processes.",
        ),
    ] = False,
    keep: Annotated[
        bool,
        typer.Option(
            help="Leave everything running (platform or node, operator, workers); print how to "
            "use it."
        ),
    ] = False,
    namespace: Annotated[
        str,
        typer.Option("--namespace", "-n", help="Namespace of the demo sagas (created if missing)."),
    ] = "kubesaga-demo",
    timeout: Annotated[
        float,
        typer.Option(min=1, help="Seconds the sagas get to finish (platform start excluded)."),
    ] = 180.0,
    example: Annotated[
        list[str] | None,
        typer.Option("--example", "-e", help="Run only this example, e.g. 02 (repeatable)."),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option(help="The kubesaga checkout (default: the installed one, else the cwd's)."),
    ] = None,
) -> None:
    """Run the examples end to end: local kube-apiserver + etcd + RabbitMQ, the CRD, the operator
    and the example workers as local processes, each saga followed live to its final phase.

    Exits 0 when every saga reached its expected phase. With KUBESAGA_USE_EXISTING=1, KUBECONFIG
    and KUBESAGA_AMQP_URL it uses your cluster and broker instead of starting the local platform.

    With --cluster: the one-node cluster of hack/cluster.sh (started, or reused when it runs), the
    chart installed with `helm upgrade --install` and the examples' worker Deployments in a
    namespace enforcing Pod Security restricted, then the same sagas, live view and summary.
    Without --keep it uninstalls, deletes the namespace and stops the node if it started it.
    """
    from kubesaga.cli.render import make_console
    from kubesaga.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        namespace=namespace,
        timeout=timeout,
        keep=keep,
        repo=repo,
        only=tuple(example or ()),
        cluster=cluster,
    )
    console = make_console()
    try:
        code = asyncio.run(run_demo(options, console))
    except DemoError as error:
        console.print(f"[bold red]kubesaga demo:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    except RuntimeError as error:  # e.g. no Kubernetes configuration
        console.print(f"[bold red]kubesaga demo:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("kubesaga demo: interrupted; everything it started is stopped")
        raise typer.Exit(130) from None
    raise typer.Exit(code)
