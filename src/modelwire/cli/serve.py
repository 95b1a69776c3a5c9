"""`modelwire serve`: its options are made from `Settings`, one per setting, so a new
setting is a flag with no more code. A flag is the setting's name in kebab case without
the `_s` of seconds (`grace_period_s` → `--grace-period`), with the few names below
kept as they were first published; its help is the setting's description."""

from __future__ import annotations

import inspect
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from modelwire.cli.common import fail
from modelwire.errors import ModelwireError
from modelwire.settings import Settings

__all__ = ["serve"]

#: Flags that are not the setting's name: list settings take one value per flag.
_FLAGS: dict[str, str] = {
    "hosts": "--host",
    "model_repositories": "--model-repository",
    "tokens_file": "--tokens",
    "default_models": "--default-models/--no-default-model",
    "allow_python_models": "--allow-python-models/--no-python-models",
}
#: Settings whose flag takes a word as well as a number (`--rest-port off`).
_WORDS = {"rest_port"}


def flag_of(name: str) -> str:
    """The flag that sets `name` (for booleans, "--on/--off")."""
    if name in _FLAGS:
        return _FLAGS[name]
    flag = "--" + name.removesuffix("_s").replace("_", "-")
    if Settings.model_fields[name].annotation is bool:
        return f"{flag}/--no-{flag[2:]}"
    return flag


def _option_type(name: str, annotation: Any) -> Any:
    """The type typer parses the flag's value as; pydantic checks the rest."""
    if name in _WORDS:
        return str
    if get_origin(annotation) is list:
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = present[0] if len(present) == 1 else str
    if get_origin(annotation) is Literal:
        return str
    return annotation


def _help(field: FieldInfo) -> str:
    text = field.description or ""
    if get_origin(field.annotation) is list:
        text += " Repeat the flag for more than one."
    default = field.default
    if default is not PydanticUndefined and default is not None and "default" not in text:
        shown = ", ".join(map(str, default)) if isinstance(default, list) else default
        text += f" (default: {shown})"
    return text


def _parameters() -> list[inspect.Parameter]:
    parameters = []
    for name, field in Settings.model_fields.items():
        option = typer.Option(flag_of(name), help=_help(field), show_default=False)
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[_option_type(name, field.annotation) | None, option],
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
    """Serve the models over gRPC (and REST) until SIGTERM or Ctrl-C."""
    from modelwire.assembly import loop_factory
    from modelwire.assembly import serve as run_server
    from modelwire.logs import configure_logging
    from modelwire.server.supervisor import supervise
    from modelwire.settings import load_settings

    config = given.pop("config")
    try:
        settings = load_settings(config, **given)
    except (ValidationError, FileNotFoundError) as exc:
        raise fail(f"bad settings: {exc}") from None
    configure_logging(settings.log_format)
    try:
        loop_factory(settings)  # a missing uvloop fails here, not in every worker
        if settings.worker_count > 1:
            supervise(settings)
        else:
            run_server(settings)
    except (ModelwireError, OSError) as exc:
        raise fail(str(exc)) from None


serve.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
