"""Logging for `modelwire serve`: readable text, or one JSON object per line.

Lines are formatted and written by a thread of their own: the access log writes a line
per call, and formatting it and writing it to stderr on the event loop cost each call a
syscall and a few microseconds that the loop does not need to spend. The thread wakes
every `FLUSH_EVERY_S` for the access log's lines (at once for any other line, and for
warnings and errors) and writes whatever has
queued up in one go, up to a pipe's atomic write (the stdlib's QueueListener would
wake, write and flush line by line: a wake-up and a syscall per call). The queue is
flushed when the process exits.

A call's line (`log_call`) skips the stdlib's record machinery when nothing but this
writer would see it: it queues the call's fields as they are, and the writer formats
them into the same line a record would give. Making a LogRecord and passing it through
the logger and handler chain cost a small call several microseconds on the event loop,
and formatting it as much again on the writer's thread. A handler or filter of the
user's on the way (or pytest's caplog) gets real records, as before.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import NamedTuple, TextIO

__all__ = ["configure_logging", "log_call"]

#: Fields the access log attaches to each call's record.
CALL_FIELDS = ("method", "code", "duration_ms", "peer", "request_id")

#: The access log's logger, and its message for a gRPC call: method, code, milliseconds.
ACCESS_LOGGER = "modelwire.access"
CALL_MESSAGE = "%s %s %.1fms"

access_log = logging.getLogger(ACCESS_LOGGER)


class CallLine(NamedTuple):
    """One call's access-log line, before it is formatted."""

    created: float  # time.time()
    method: str
    code: str
    seconds: float
    peer: str
    request_id: str

    @property
    def message(self) -> str:
        return CALL_MESSAGE % (self.method, self.code, self.seconds * 1000)

    def fields(self) -> dict[str, object]:
        """CALL_FIELDS, as the record of this call would carry them."""
        return {
            "method": self.method,
            "code": self.code,
            "duration_ms": round(self.seconds * 1000, 3),
            "peer": self.peer,
            "request_id": self.request_id,
        }


def log_call(method: str, code: str, seconds: float, peer: str, request_id: str) -> None:
    """The access log's line for one call, at INFO."""
    handoff = _handoff
    if handoff is not None and access_log.isEnabledFor(logging.INFO) and _only(handoff):
        handoff.writer.add(CallLine(time.time(), method, code, seconds, peer, request_id))
        return
    line = CallLine(0.0, method, code, seconds, peer, request_id)
    access_log.info(CALL_MESSAGE, method, code, seconds * 1000, extra=line.fields())


def _only(handoff: _Handoff) -> bool:
    """Whether `handoff` is the one handler, unfiltered, an access record would reach."""
    if access_log.filters or handoff.filters or handoff.level > logging.INFO:
        return False
    logger = access_log
    while logger.parent is not None:  # up to the root
        if logger.handlers or not logger.propagate:
            return False
        logger = logger.parent
    handlers = logger.handlers
    return len(handlers) == 1 and handlers[0] is handoff


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            line["worker"] = self._worker
        for name in CALL_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)

    def format_call(self, call: CallLine) -> str:
        """The line `format` gives for this call's record."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(call.created, UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": ACCESS_LOGGER,
            "message": call.message,
        }
        if self._worker is not None:
            line["worker"] = self._worker
        line.update(call.fields())
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        self._where = "" if worker is None else f"[worker {worker}] "
        super().__init__(f"%(asctime)s %(levelname)s {self._where}%(message)s")
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if hasattr(record, "request_id"):
            text += f" peer={getattr(record, 'peer', '')} request_id={record.request_id}"
        return text

    def format_call(self, call: CallLine) -> str:
        """The line `format` gives for this call's record (asctime as formatTime makes
        it, the seconds formatted once per second)."""
        second = int(call.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(self.default_time_format, self.converter(call.created))
        asctime = self._stamp
        if self.default_msec_format:
            asctime = self.default_msec_format % (asctime, int((call.created - second) * 1000))
        return (
            f"{asctime} INFO {self._where}{call.message} "
            f"peer={call.peer} request_id={call.request_id}"
        )


class _Handoff(logging.Handler):
    """Appends records to the writer's queue as they are, their message resolved now (its
    arguments may change later). The stdlib's QueueHandler would format them here, on
    the calling thread, and put them on a queue.Queue, whose every put wakes the
    writer."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        self.writer.add(record)

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle takes the handler's lock around emit; a deque's append needs
        # none, and the lock is an uncontended acquire and release on every line.
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True


#: The most one write holds: a pipe writes up to PIPE_BUF (4096) bytes in one piece, so
#: the lines of several worker processes sharing stderr never interleave mid-line.
_WRITE_BYTES = 4096

#: How long an access log line may wait to be written. Waking the writer for every
#: call's line costs the loop a futex wake and the GIL a hand-over per call: a tenth of
#: a small call's server CPU time, measured. Every other line (start-up, model loads,
#: warnings) wakes it at once.
FLUSH_EVERY_S = 0.05


class _Writer:
    """The thread that formats queued records and writes them, a batch at a time."""

    def __init__(
        self,
        formatter: TextFormatter | JsonFormatter,
        stream: TextIO,
        flush_every_s: float = FLUSH_EVERY_S,
    ) -> None:
        self.records: deque[logging.LogRecord | CallLine | None] = deque()
        self._flush_every_s = flush_every_s
        self.formatter = formatter
        self._stream = stream
        self._failed = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._write, name="modelwire-log", daemon=True)
        self._thread.start()

    def add(self, record: logging.LogRecord | CallLine | None) -> None:
        """Queue a record or a call's line (None: stop once the queue is written); only
        the access log's lines wait for the next flush. deque.append is atomic."""
        self.records.append(record)
        if isinstance(record, CallLine):
            return
        if record is None or record.levelno >= logging.WARNING or record.name != ACCESS_LOGGER:
            self._wake.set()

    def _write(self) -> None:
        records = self.records
        while True:
            self._wake.wait(self._flush_every_s)
            self._wake.clear()
            chunk: list[str] = []
            size = 0
            while records:
                record = records.popleft()
                if record is None:
                    self._flush(chunk)
                    return
                try:
                    if isinstance(record, CallLine):
                        line = self.formatter.format_call(record) + "\n"
                    else:
                        line = self.formatter.format(record) + "\n"
                except Exception as error:  # a bad record must not stop the logging
                    name = ACCESS_LOGGER if isinstance(record, CallLine) else record.name
                    line = f"--- a log line from {name} failed: {error!r}\n"
                length = len(line.encode())
                if chunk and size + length > _WRITE_BYTES:
                    self._flush(chunk)
                    chunk, size = [], 0
                chunk.append(line)
                size += length
            self._flush(chunk)

    def _flush(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._stream.write("".join(lines))
            self._stream.flush()
        except (OSError, ValueError) as error:  # stderr closed or full: say so once, go on
            if not self._failed:
                self._failed = True
                print(f"modelwire: cannot write log lines: {error}", file=sys.__stderr__)

    def stop(self) -> None:
        self.add(None)
        self._thread.join()


_writer: _Writer | None = None
_handoff: _Handoff | None = None
_at_exit = False


def configure_logging(
    log_format: str = "text", level: int = logging.INFO, worker: int | None = None
) -> None:
    """Log to stderr, from a thread of its own; `worker` (of `serve --workers`) is named
    in every line. Turns off, for the whole process, what the formatters never print:
    the caller's frame, thread and process names (the logging HOWTO's "Optimization")."""
    global _writer, _handoff, _at_exit
    stop_logging()
    formatter = JsonFormatter(worker) if log_format == "json" else TextFormatter(worker)
    _writer = _Writer(formatter, sys.stderr)
    if not _at_exit:
        atexit.register(stop_logging)
        _at_exit = True
    _handoff = _Handoff(_writer)
    root = logging.getLogger()
    root.handlers[:] = [_handoff]
    root.setLevel(level)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def stop_logging() -> None:
    """Write the lines still queued and stop the writing thread (at exit, or before
    logging is configured again). Lines logged after go straight to stderr."""
    global _writer, _handoff
    if _writer is None:
        return
    writer, _writer, _handoff = _writer, None, None
    writer.stop()
    root = logging.getLogger()
    if any(isinstance(handler, _Handoff) for handler in root.handlers):
        direct = logging.StreamHandler()
        direct.setFormatter(writer.formatter)
        root.handlers[:] = [direct]
