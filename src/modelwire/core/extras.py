"""Modules of the optional extras, imported where first needed."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from modelwire.errors import FailedPrecondition

__all__ = ["installed", "optional"]


def optional(module: str, extra: str) -> ModuleType:
    """`module`, or FailedPrecondition naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FailedPrecondition(
            f"this needs {module}, which this server lacks: pip install 'modelwire[{extra}]'"
        ) from None


def installed(module: str) -> bool:
    """Whether `module` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: set to None in sys.modules
        return False
