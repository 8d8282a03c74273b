"""The ``kubesaga`` command line (typer). Never imports kopf at import time."""

from kubesaga.cli.main import app, main

__all__ = ["app", "main"]
