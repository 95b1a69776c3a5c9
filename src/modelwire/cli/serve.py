"""`modelwire serve` in the full command line: a typer command whose options are the
flags of `cli.flags`, one per setting."""

from __future__ import annotations

import inspect
import types
from pathlib import Path
from typing import Annotated, Any

import typer

from modelwire.cli.common import fail
from modelwire.cli.flags import (
    SERVE_HELP,
    flag_of,
    help_of,
    is_list,
    negative_flag_of,
    run_serve,
    value_type,
)
from modelwire.settings import Settings

__all__ = ["serve"]


def _parameters() -> list[inspect.Parameter]:
    parameters = []
    for name in Settings.model_fields:
        negative = negative_flag_of(name)
        flag = flag_of(name) if negative is None else f"{flag_of(name)}/{negative}"
        option = typer.Option(flag, help=help_of(name), show_default=False)
        kind = value_type(name)
        if is_list(name):
            kind = types.GenericAlias(list, (kind,))
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, option],
            )
        )
    config = typer.Option(help="TOML file with settings (flags and env win).")
    parameters.append(
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[Path | None, config],
        )
    )
    return parameters


def serve(**given: Any) -> None:
    config = given.pop("config")
    problem = run_serve(config, given)
    if problem is not None:
        raise fail(problem)


serve.__doc__ = SERVE_HELP
serve.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
