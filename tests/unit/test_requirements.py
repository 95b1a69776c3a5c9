"""The suite's policy for what is missing: skipped outside CI, a failure under CI."""

from __future__ import annotations

import pytest

from tests.requirements import missing, need_module, need_program


def test_outside_ci_a_missing_dependency_skips_saying_what(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="the thing is missing"):
        missing("the thing")


def test_under_ci_a_missing_dependency_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs the thing"):
        missing("the thing")
    with pytest.raises(pytest.fail.Exception, match="no-such-module"):
        need_module("no_such_module_anywhere", "no-such-module")
    with pytest.raises(pytest.fail.Exception, match="no-such-program"):
        need_program("no-such-program-anywhere", "no-such-program")


def test_what_is_there_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert need_module("json", "json").dumps([]) == "[]"
    assert need_program("sh", "a shell").endswith("/sh")
