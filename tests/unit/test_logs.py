"""Log lines leave through a writer thread: every line, formatted as before, flushed at
the end."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from modelwire import logs
from modelwire.logs import (
    ACCESS_LOGGER,
    CallLine,
    JsonFormatter,
    TextFormatter,
    _Writer,
    configure_logging,
    log_call,
    stop_logging,
)


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    flags = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    saved = {flag: getattr(logging, flag) for flag in flags}
    yield
    stop_logging()
    root.handlers[:] = handlers
    root.setLevel(level)
    for flag, value in saved.items():
        setattr(logging, flag, value)


def test_every_line_is_written_off_the_calling_thread(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    writers: set[str] = set()
    original = JsonFormatter.format

    def format(formatter: JsonFormatter, record: logging.LogRecord) -> str:
        writers.add(threading.current_thread().name)
        return original(formatter, record)

    access = logging.getLogger("modelwire.access")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JsonFormatter, "format", format)
        configure_logging("json")
        values = {"n": 0}
        for number in range(500):
            values["n"] = number  # the same mapping each time, changed after each line
            access.info("call %(n)d", values, extra={"request_id": f"id-{number}"})
        try:
            raise ValueError("broken")
        except ValueError:
            logging.getLogger("modelwire.test").exception("failed %s", "here")
        stop_logging()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    calls = [line for line in lines if line["logger"] == "modelwire.access"]
    assert [line["request_id"] for line in calls] == [f"id-{n}" for n in range(500)]
    assert calls[7]["message"] == "call 7"  # resolved when logged, not when written
    (failure,) = [line for line in lines if line["logger"] == "modelwire.test"]
    assert failure["message"] == "failed here"
    assert "ValueError: broken" in failure["exception"]
    assert writers == {"modelwire-log"}  # formatted, and written, on the writer's thread


class _Recording(io.StringIO):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.writes: list[str] = []
        self._fail = fail

    def write(self, text: str) -> int:
        if self._fail:
            raise OSError(28, "No space left on device")
        self.writes.append(text)
        return super().write(text)


def _record(number: int) -> logging.LogRecord:
    return logging.LogRecord("modelwire.access", logging.INFO, "", 0, "call %d", (number,), None)


def test_writes_end_at_a_line_and_fit_a_pipes_atomic_write() -> None:
    stream = _Recording()
    writer = _Writer(TextFormatter(), stream)
    for number in range(3000):
        writer.add(_record(number))
    writer.stop()
    assert all(len(w.encode()) <= 4096 and w.endswith("\n") for w in stream.writes)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(n) for n in range(3000)]


def test_a_failing_stream_neither_stops_the_writer_nor_raises(
    capfd: pytest.CaptureFixture[str],
) -> None:
    writer = _Writer(TextFormatter(), _Recording(fail=True))
    for number in range(10):
        writer.add(_record(number))
    writer.stop()  # returns: the thread went on after the first failed write
    assert capfd.readouterr().err.count("cannot write log lines") == 1  # said once


def test_lines_logged_after_the_writer_stopped_still_reach_stderr(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("text")
    stop_logging()
    logging.getLogger("modelwire.late").warning("after the end")
    assert "after the end" in capsys.readouterr().err


class _Signalling(_Recording):
    """Sets `written` at each write."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def write(self, text: str) -> int:
        count = super().write(text)
        self.written.set()
        return count


def test_access_lines_wait_for_the_next_flush_and_other_lines_write_them_at_once() -> None:
    stream = _Signalling()
    writer = _Writer(TextFormatter(), stream, flush_every_s=3600)
    for number in range(10):
        writer.add(_record(number))
    assert not stream.written.wait(0.2)  # access lines alone do not wake the writer
    warning = _record(10)
    warning.levelno, warning.levelname = logging.WARNING, "WARNING"
    writer.add(warning)
    assert stream.written.wait(30)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(n) for n in range(11)]
    assert "WARNING" in lines[-1]
    stream.written.clear()
    started = logging.LogRecord("modelwire.server", logging.INFO, "", 0, "serving", (), None)
    writer.add(started)  # a start-up line: at once, whatever its level
    assert stream.written.wait(30)
    assert stream.getvalue().endswith(" serving\n")
    writer.stop()


def test_info_lines_are_written_within_the_flush_interval_without_a_stop() -> None:
    stream = _Signalling()
    writer = _Writer(TextFormatter(), stream, flush_every_s=0.01)
    writer.add(_record(1))
    assert stream.written.wait(30)
    assert stream.getvalue().endswith(" 1\n")
    writer.stop()


class _Keeping(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


CALL = ("/inference.GRPCInferenceService/ModelInfer", "OK", 0.0012345, "ipv4:1.2.3.4:5", "ab12")


@pytest.mark.parametrize(
    "formatter",
    [TextFormatter(), TextFormatter(worker=3), JsonFormatter(), JsonFormatter(worker=3)],
    ids=["text", "text-worker", "json", "json-worker"],
)
def test_a_calls_line_formats_as_its_record_would(
    restore_root: None, formatter: TextFormatter | JsonFormatter
) -> None:
    keeping = _Keeping()
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(keeping)  # a handler of the user's: real records
    access.setLevel(logging.INFO)
    try:
        log_call(*CALL)
    finally:
        access.removeHandler(keeping)
        access.setLevel(logging.NOTSET)
    (record,) = keeping.records
    line = CallLine(record.created, *CALL)
    assert formatter.format_call(line) == formatter.format(record)
    for created in (1_700_000_000.0, 1_700_000_000.9996, 1_700_000_001.25):
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        line = line._replace(created=created)
        assert formatter.format_call(line) == formatter.format(record)


def test_call_lines_skip_the_record_only_when_nothing_else_would_see_them(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json")
    queued: list[object] = []
    with pytest.MonkeyPatch.context() as patch:
        writer = logs._writer
        assert writer is not None
        original = writer.add

        def add(item: logging.LogRecord | CallLine | None) -> None:
            queued.append(item)
            original(item)

        patch.setattr(writer, "add", add)
        log_call(*CALL)
        keeping = _Keeping()
        access = logging.getLogger(ACCESS_LOGGER)
        access.addHandler(keeping)
        try:
            log_call(*CALL)
        finally:
            access.removeHandler(keeping)
        parent = logging.getLogger("modelwire")

        def refuse(record: logging.LogRecord) -> bool:
            return False

        # A parent's filter does not see propagated records (the stdlib's rule): the
        # fields alone still; a filter on the access logger itself: a real record.
        for logger in (parent, access):
            logger.addFilter(refuse)
            try:
                log_call(*CALL)
            finally:
                logger.removeFilter(refuse)
        access.setLevel(logging.WARNING)
        try:
            log_call(*CALL)  # below the level: no line at all
        finally:
            access.setLevel(logging.NOTSET)
    stop_logging()
    assert isinstance(queued[0], CallLine)  # nothing else on the way: the fields alone
    assert isinstance(queued[1], logging.LogRecord)  # a user's handler: a real record
    assert isinstance(queued[2], CallLine)
    assert len(queued) == 3  # the access logger's filter refused its record
    assert len(keeping.records) == 1
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    calls = [line for line in lines if line["logger"] == ACCESS_LOGGER]
    assert len(calls) == 3
    assert calls[0] == {**calls[1], "time": calls[0]["time"]}
    assert calls[0]["duration_ms"] == 1.234
    assert calls[0]["message"].endswith(" OK 1.2ms")
