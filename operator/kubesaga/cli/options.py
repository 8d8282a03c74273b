"""Command-line flags derived from ``Settings``, so a flag never repeats a default or a help text.

A flag overrides its ``KUBESAGA_*`` variable for one run. Its name comes from the field's ``Use``
marker, its help from the field's docstring, and its default is ``None`` ("not given"): the
setting's own default (or the environment) applies, and pydantic checks the bounds of both.
"""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from kubesaga.settings import Settings, env_name, use_of


def setting_option(field: str) -> Any:
    """The ``typer.Option`` of a setting with flags, for ``Annotated[T | None, ...] = None``."""
    info = Settings.model_fields[field]
    flags = use_of(info).flags
    if not flags:
        raise ValueError(f"setting {field!r} has no command-line flag")
    default = info.get_default(call_default_factory=True)
    shown = ",".join(default) if isinstance(default, list) else default
    return typer.Option(
        *flags,
        # parentheses, not brackets: typer's rich help would take [...] for markup
        help=f"{info.description} ({env_name(field)}; default {shown or 'none'})",
        show_default=False,
    )


def load_settings(command: str, **flags: object) -> Settings:
    """``Settings`` from the environment with the flags that were given on top.

    An invalid value (flag or variable) exits with status 2 and pydantic's message, naming the
    variable, instead of a traceback.
    """
    given: dict[str, Any] = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        problems = "; ".join(
            f"{env_name(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}"
            for e in error.errors()
        )
        typer.echo(f"kubesaga {command}: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from error
