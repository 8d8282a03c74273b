"""``kubesaga operator``: run the operator until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer


def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to watch (repeatable); default all."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /metrics, /livez and /readyz (0 disables).")
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds from SIGTERM to a forced exit (keep it below the pod's "
            "terminationGracePeriodSeconds); a second signal exits at once.",
        ),
    ] = 20.0,
) -> None:
    """Run the operator (configuration from KUBESAGA_* variables and KUBECONFIG)."""
    from kubesaga.cli.logs import setup_logging
    from kubesaga.cli.signals import Shutdown
    from kubesaga.operator import run_operator
    from kubesaga.settings import Settings

    settings = Settings()
    if namespace:
        settings.namespaces = list(namespace)
    if metrics_port is not None:
        settings.metrics_port = metrics_port
    setup_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        shutdown = Shutdown(stop, grace, "operator")
        shutdown.install()
        await run_operator(settings, stop=stop, signals=shutdown.install)

    try:
        asyncio.run(main())
    except RuntimeError as error:  # configuration problems: one clear line, no traceback
        typer.echo(f"kubesaga operator: {error}", err=True)
        raise typer.Exit(2) from error
