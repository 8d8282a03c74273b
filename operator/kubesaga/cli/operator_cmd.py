"""``kubesaga operator``: run the operator until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from kubesaga.cli.options import load_settings, setting_option


def operator(
    namespace: Annotated[list[str] | None, setting_option("namespaces")] = None,
    metrics_port: Annotated[int | None, setting_option("metrics_port")] = None,
    grace: Annotated[float | None, setting_option("operator_grace_seconds")] = None,
) -> None:
    """Run the operator (settings from KUBESAGA_* variables, docs/settings.md; the flags
    override them)."""
    from kubesaga.cli.logs import setup_logging
    from kubesaga.cli.signals import Shutdown
    from kubesaga.operator import run_operator

    settings = load_settings(
        "operator",
        namespaces=namespace or None,
        metrics_port=metrics_port,
        operator_grace_seconds=grace,
    )
    setup_logging(settings.log_level, settings.log_format)

    async def main() -> None:
        stop = asyncio.Event()
        shutdown = Shutdown(stop, settings.operator_grace_seconds, "operator")
        shutdown.install()
        await run_operator(settings, stop=stop, signals=shutdown.install)

    try:
        asyncio.run(main())
    except RuntimeError as error:  # configuration problems: one clear line, no traceback
        typer.echo(f"kubesaga operator: {error}", err=True)
        raise typer.Exit(2) from error
