"""`modelwire serve`'s flags, made from `Settings`: one per setting, so a new setting is a
flag with no more code. A flag is the setting's name in kebab case without the `_s` of
seconds (`grace_period_s` → `--grace-period`), with the few names below kept as they
were first published; its help is the setting's description. Both the full command line
(typer, the `cli` extra) and the plain one of a bare install read them here."""

from __future__ import annotations

from typing import Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from modelwire.settings import Settings

__all__ = ["SERVE_HELP", "flag_of", "help_of", "is_list", "negative_flag_of", "run_serve"]

SERVE_HELP = "Serve the models over gRPC (and REST) until SIGTERM or Ctrl-C."

#: Flags that are not the setting's name: list settings take one value per flag.
_FLAGS: dict[str, str] = {
    "hosts": "--host",
    "model_repositories": "--model-repository",
    "tokens_file": "--tokens",
    "default_models": "--default-models",
    "allow_python_models": "--allow-python-models",
}
#: The "off" flags of the booleans whose names are not --no-<flag>.
_NEGATIVE_FLAGS = {
    "default_models": "--no-default-model",
    "allow_python_models": "--no-python-models",
}
#: Settings whose flag takes a word as well as a number (`--rest-port off`).
_WORDS = {"rest_port"}


def flag_of(name: str) -> str:
    """The flag that sets `name` (for a boolean, the one that turns it on)."""
    return _FLAGS.get(name) or "--" + name.removesuffix("_s").replace("_", "-")


def negative_flag_of(name: str) -> str | None:
    """The flag that turns a boolean setting off (None for other settings)."""
    if Settings.model_fields[name].annotation is not bool:
        return None
    return _NEGATIVE_FLAGS.get(name) or "--no-" + flag_of(name)[2:]


def is_list(name: str) -> bool:
    return get_origin(Settings.model_fields[name].annotation) is list


def value_type(name: str) -> Any:
    """The type a flag's value is parsed as (str where pydantic parses it)."""
    annotation = Settings.model_fields[name].annotation
    if name in _WORDS:
        return str
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = present[0] if len(present) == 1 else str
    if get_origin(annotation) is Literal:
        return str
    return annotation


def help_of(name: str) -> str:
    field: FieldInfo = Settings.model_fields[name]
    text = field.description or ""
    if is_list(name):
        text += " Repeat the flag for more than one."
    default = field.default
    if default is not PydanticUndefined and default is not None and "default" not in text:
        shown = ", ".join(map(str, default)) if isinstance(default, list) else default
        text += f" (default: {shown})"
    return text


def run_serve(config: Any, given: dict[str, Any]) -> str | None:
    """Load the settings (flags `given`, None: not given) and serve until a signal;
    what went wrong, for the command line to print, or None."""
    from modelwire.assembly import loop_factory
    from modelwire.assembly import serve as run_server
    from modelwire.errors import ModelwireError
    from modelwire.logs import configure_logging
    from modelwire.server.supervisor import supervise
    from modelwire.settings import load_settings

    try:
        settings = load_settings(config, **given)
    except (ValidationError, FileNotFoundError) as exc:
        return f"bad settings: {exc}"
    configure_logging(settings.log_format)
    try:
        loop_factory(settings)  # a missing uvloop fails here, not in every worker
        if settings.worker_count > 1:
            supervise(settings)
        else:
            run_server(settings)
    except (ModelwireError, OSError) as exc:
        return str(exc)
    return None
