"""``kubesaga ui``: serve the web UI with the caller's kubeconfig until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer


def ui(
    address: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but loopback exposes your kubeconfig's "
            "rights to whoever reaches it."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            help="Port to listen on (0: any free port). Not 8080: the operator's "
            "metrics port by default."
        ),
    ] = 8090,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Show only this namespace.")
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Offer no actions, whatever RBAC allows.")
    ] = False,
    kubeconfig: Annotated[
        str | None,
        typer.Option(help="Kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)."),
    ] = None,
) -> None:
    """Serve a web UI of the Sagas: a live list, and each saga's graph, timeline and Events."""
    import ipaddress

    from kubesaga.cli.logs import setup_logging
    from kubesaga.store import make_api_client
    from kubesaga.ui import make_app, serving

    setup_logging("INFO", "text")
    try:
        loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False

    async def main() -> None:
        api = await make_api_client(kubeconfig)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            app = make_app(api, namespace, read_only=read_only, loopback_only=loopback)
            async with serving(app, address, port) as bound:
                host = f"[{address}]" if ":" in address else address
                typer.echo(f"kubesaga ui: serving on http://{host}:{bound}/", err=True)
                await stop.wait()
        finally:
            await api.close()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except (RuntimeError, OSError) as error:
        typer.echo(f"kubesaga ui: {error}", err=True)
        raise typer.Exit(2) from error
