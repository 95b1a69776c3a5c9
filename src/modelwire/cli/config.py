"""`modelwire config show`: the settings `modelwire serve` would use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import fail

__all__ = ["config_app"]

config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)

#: Settings whose values are not printed: where credentials live is for the operator.
SECRET = {"tls_key", "tokens_file", "database_url"}


@config_app.command("show")
def show(
    config: Annotated[Path | None, typer.Option(help="TOML settings file, as for serve.")] = None,
) -> None:
    """Print the settings from the environment (MODELWIRE_*), the config file and the
    defaults, as JSON; secrets masked. Flags given to serve would win over these."""
    from pydantic import ValidationError

    from modelwire.settings import load_settings

    try:
        settings = load_settings(config)
    except (ValidationError, FileNotFoundError) as error:
        raise fail(f"bad settings: {error}") from None
    values = settings.model_dump(mode="json")
    for name in SECRET:
        if values.get(name) is not None:
            values[name] = "***"
    typer.echo(json.dumps(values, indent=2, sort_keys=True))
