"""What a test needs from the machine, and what happens when it is missing: outside CI
the test is skipped, saying what is missing; under CI=true it fails, since CI installs
everything the suite needs (.ci/run) and a skip there would hide a broken install."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

__all__ = ["in_ci", "missing", "need_module", "need_program"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> NoReturn:
    """Skip this test (or module) for want of `what`; under CI, fail it."""
    if in_ci():
        pytest.fail(f"CI needs {what}, which is missing: .ci/run should install it", False)
    pytest.skip(f"{what} is missing", allow_module_level=True)


def need_module(name: str, what: str) -> ModuleType:
    """The module `name`, or `missing(what)`."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(what)


def need_program(name: str, what: str) -> str:
    """The path of the program `name`, or `missing(what)`."""
    path = shutil.which(name)
    if path is None:
        missing(what)
    return path
