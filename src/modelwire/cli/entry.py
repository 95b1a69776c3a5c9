"""The `modelwire` command. With the `cli` extra (typer and rich) it is the full command
line; a bare `pip install modelwire`, as on an edge device, has `modelwire serve` alone,
parsed by argparse from the same flags (`cli.flags`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modelwire.cli.flags import SERVE_HELP, flag_of, help_of, is_list, negative_flag_of, run_serve
from modelwire.core.extras import installed
from modelwire.settings import Settings

__all__ = ["main", "plain_serve"]

_NEEDS_CLI = (
    "modelwire: this command needs the full command line: pip install 'modelwire[cli]' "
    "(without it, `modelwire serve` alone is here)"
)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if installed("typer"):
        from modelwire.cli.main import app

        app(args=arguments, prog_name="modelwire")
        return
    if arguments[:1] != ["serve"]:
        sys.exit(_NEEDS_CLI)
    plain_serve(arguments[1:])


def plain_serve(argv: Sequence[str]) -> None:
    """`modelwire serve` without typer: the same flags, checked by the same Settings."""
    arguments = vars(_parser().parse_args(argv))
    config = arguments.pop("config")
    problem = run_serve(config, arguments)
    if problem is not None:
        sys.exit(f"Error: {problem}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelwire serve", description=SERVE_HELP)
    for name in Settings.model_fields:
        negative = negative_flag_of(name)
        if negative is not None:
            parser.add_argument(
                flag_of(name), dest=name, action="store_const", const=True, help=help_of(name)
            )
            parser.add_argument(negative, dest=name, action="store_const", const=False)
        elif is_list(name):
            parser.add_argument(flag_of(name), dest=name, action="append", help=help_of(name))
        else:
            parser.add_argument(flag_of(name), dest=name, help=help_of(name))
    parser.add_argument("--config", type=Path, help="TOML file with settings (flags and env win).")
    return parser
