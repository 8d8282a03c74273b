"""``kubesaga worker package.module:attr``: serve a Worker's handlers until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

CLOSE_SECONDS = 10.0
"""After the grace period, time to requeue unfinished commands and disconnect before a forced
exit (the chart's terminationGracePeriodSeconds is grace + 15)."""


def worker(
    target: Annotated[
        str, typer.Argument(help="The Worker object to run, as package.module:attribute.")
    ],
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "--prefetch",
            min=1,
            help="Commands handled at once (also the AMQP prefetch).",
        ),
    ] = 16,
    grace: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds running handlers get to finish after SIGTERM before requeueing; "
            f"{CLOSE_SECONDS:.0f}s later the worker exits whatever it waits for, and a second "
            "signal exits at once.",
        ),
    ] = 30.0,
    app_dir: Annotated[
        str, typer.Option(help="Folder put first on sys.path before importing the target.")
    ] = ".",
) -> None:
    """Run a worker until SIGTERM/SIGINT.

    The broker comes from KUBESAGA_AMQP_URL, KUBESAGA_AMQP_CA_FILE and KUBESAGA_QUORUM_QUEUES.
    With KUBESAGA_HEALTH_PORT set, /livez and /readyz are served on it for the kubelet's probes.
    """
    from kubesaga.worker.loader import WorkerLoadError, load_worker

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

    from kubesaga.broker import BrokerSettings
    from kubesaga.cli.logs import setup_logging
    from kubesaga.cli.signals import Shutdown
    from kubesaga.health import Health, serve
    from kubesaga.settings import Settings

    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    broker_settings = BrokerSettings.from_settings(settings)

    async def main() -> None:
        stop = asyncio.Event()
        Shutdown(stop, grace + CLOSE_SECONDS, "worker").install()
        health = Health()
        health.start()
        server = None
        if settings.health_port:
            server = await serve(health, settings.metrics_host, settings.health_port)
        try:
            await loaded.run(
                broker_settings, concurrency=concurrency, stop=stop, grace=grace, health=health
            )
        finally:
            if server is not None:
                await server.cleanup()
            await health.close()

    asyncio.run(main())
