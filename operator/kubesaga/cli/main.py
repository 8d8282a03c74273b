"""The ``kubesaga`` command line.

``app`` is the one typer application. Each command lives with the code it drives and is added here
with one line, ``app.command()(fn)`` or ``app.add_typer(sub_app, name=...)``. Commands import their
heavy dependencies (kopf, aio-pika, the Kubernetes client) inside the function body, so
``kubesaga --help`` and ``kubesaga crd`` stay fast and work without a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="kubesaga",
    help="Kubernetes-native saga orchestrator: Saga resources driven by an operator over RabbitMQ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def crd(
    output: Annotated[
        list[Path] | None,
        typer.Option(
            "--output", "-o", help="Write the CRD to this file (repeatable) instead of stdout."
        ),
    ] = None,
) -> None:
    """Print the Saga CustomResourceDefinition (YAML) generated from the models."""
    from kubesaga.schema import render_crd

    text = render_crd()
    if not output:
        typer.echo(text, nl=False)
        return
    for path in output:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}", err=True)


def schemas(
    output_dir: Annotated[
        Path,
        typer.Option("--output-dir", "-d", help="Folder for command/result.schema.json."),
    ] = Path("docs/schemas"),
) -> None:
    """Write the JSON Schemas of the protocol's Command and Result messages."""
    from kubesaga.schema import message_schema_files

    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in message_schema_files().items():
        path = output_dir / name
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}", err=True)


def chart_values(
    chart_dir: Annotated[
        Path, typer.Option("--chart-dir", "-d", help="The chart's folder.")
    ] = Path("helm/kubesaga"),
) -> None:
    """Write the chart's values.yaml and values.schema.json, generated from the values model."""
    from kubesaga.schema.chart import render_values_schema, render_values_yaml

    for name, text in (
        ("values.yaml", render_values_yaml()),
        ("values.schema.json", render_values_schema()),
    ):
        path = chart_dir / name
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}", err=True)


def settings_doc(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it here instead of stdout.")
    ] = None,
) -> None:
    """Print the table of every KUBESAGA_* setting (docs/settings.md), generated from Settings."""
    from kubesaga.schema.settings_doc import render_settings_doc

    text = render_settings_doc()
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}", err=True)


app.command("crd")(crd)
app.command("schemas")(schemas)
app.command("chart-values")(chart_values)
app.command("settings-doc")(settings_doc)


def main() -> None:
    """Console-script entry point (``kubesaga``)."""
    app()


def _register() -> None:
    """Commands defined next to the code they drive."""
    from kubesaga.cli.approval_cmd import approve, reject
    from kubesaga.cli.demo_cmd import demo
    from kubesaga.cli.operate_cmd import redrive, resume, suspend
    from kubesaga.cli.operator_cmd import operator
    from kubesaga.cli.sagas_cmd import compensate, get, start
    from kubesaga.cli.ui_cmd import ui
    from kubesaga.cli.worker_cmd import worker

    app.command("operator")(operator)
    app.command("start")(start)
    app.command("get")(get)
    app.command("compensate")(compensate)
    app.command("suspend")(suspend)
    app.command("resume")(resume)
    app.command("redrive")(redrive)
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("worker")(worker)
    app.command("demo")(demo)
    app.command("ui")(ui)


_register()
