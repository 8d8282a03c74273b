"""``kubesaga worker package.module:attr``: serve a Worker's handlers until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from kubesaga.cli.options import load_settings, setting_option

CLOSE_SECONDS = 10.0
"""After the grace period, time to requeue unfinished commands and disconnect before a forced
exit (the chart's terminationGracePeriodSeconds is grace + 15)."""


def worker(
    target: Annotated[
        str, typer.Argument(help="The Worker object to run, as package.module:attribute.")
    ],
    concurrency: Annotated[int | None, setting_option("worker_concurrency")] = None,
    grace: Annotated[float | None, setting_option("worker_grace_seconds")] = None,
    app_dir: Annotated[
        str, typer.Option(help="Folder put first on sys.path before importing the target.")
    ] = ".",
) -> None:
    """Run a worker until SIGTERM/SIGINT; a second signal, or a short while after the grace period,
    exits at once.

    Settings come from KUBESAGA_* variables (docs/settings.md); the flags override them. With
    KUBESAGA_HEALTH_PORT set, /livez and /readyz are served on it for the kubelet's probes.
    """
    from kubesaga.worker.loader import WorkerLoadError, load_worker

    settings = load_settings("worker", worker_concurrency=concurrency, worker_grace_seconds=grace)
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        loaded = load_worker(target)
    except WorkerLoadError as error:
        typer.echo(f"kubesaga worker: {error}", err=True)
        raise typer.Exit(2) from error
    if not loaded.actions:
        typer.echo(f"kubesaga worker: {target} has no handlers registered", err=True)
        raise typer.Exit(2)

    from kubesaga.cli.logs import setup_logging
    from kubesaga.cli.signals import Shutdown

    setup_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        Shutdown(stop, settings.worker_grace_seconds + CLOSE_SECONDS, "worker").install()
        await loaded.run(settings, stop=stop)

    asyncio.run(main())
