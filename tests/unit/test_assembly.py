"""Which event loop `serve` runs on: `auto` takes uvloop where it is installed."""

from __future__ import annotations

import sys

import pytest
import uvloop

from modelwire.assembly import loop_factory
from modelwire.settings import Settings


def test_auto_and_uvloop_take_uvloop_where_it_is_installed() -> None:
    assert Settings().event_loop == "auto"
    assert loop_factory(Settings(event_loop="auto")) is uvloop.new_event_loop
    assert loop_factory(Settings(event_loop="uvloop")) is uvloop.new_event_loop


def test_asyncio_is_asyncios_own_loop() -> None:
    assert loop_factory(Settings(event_loop="asyncio")) is None


def test_without_uvloop_auto_falls_back_and_uvloop_says_which_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it fails
    assert loop_factory(Settings(event_loop="auto")) is None
    with pytest.raises(OSError, match=r"the `uvloop` extra"):
        loop_factory(Settings(event_loop="uvloop"))
