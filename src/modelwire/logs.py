"""Logging for `modelwire serve`: readable text, or one JSON object per line.

Lines are formatted and written by a thread of their own: the access log writes a line
per call, and formatting it and writing it to stderr on the event loop cost each call a
syscall and a few microseconds that the loop does not need to spend. The thread wakes
every `FLUSH_EVERY_S` for the access log's lines (at once for any other line, and for
warnings and errors) and writes whatever has
queued up in one go, up to a pipe's atomic write (the stdlib's QueueListener would
wake, write and flush line by line: a wake-up and a syscall per call). The queue is
flushed when the process exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["configure_logging"]

#: Fields the access log attaches to each call's record.
CALL_FIELDS = ("method", "code", "duration_ms", "peer", "request_id")


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


class TextFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        where = "" if worker is None else f"[worker {worker}] "
        super().__init__(f"%(asctime)s %(levelname)s {where}%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if hasattr(record, "request_id"):
            text += f" peer={getattr(record, 'peer', '')} request_id={record.request_id}"
        return text


class _Handoff(logging.Handler):
    """Appends records to the writer's queue as they are, their message resolved now (its
    arguments may change later). The stdlib's QueueHandler would format them here, on
    the calling thread, and put them on a queue.Queue, whose every put wakes the
    writer."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        self._writer.add(record)

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

#: The logger whose lines wait for the next flush.
_BATCHED = "modelwire.access"


class _Writer:
    """The thread that formats queued records and writes them, a batch at a time."""

    def __init__(
        self, formatter: logging.Formatter, stream: TextIO, flush_every_s: float = FLUSH_EVERY_S
    ) -> None:
        self.records: deque[logging.LogRecord | None] = deque()
        self._flush_every_s = flush_every_s
        self.formatter = formatter
        self._stream = stream
        self._failed = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._write, name="modelwire-log", daemon=True)
        self._thread.start()

    def add(self, record: logging.LogRecord | None) -> None:
        """Queue a record (None: stop once the queue is written). deque.append is atomic."""
        self.records.append(record)
        if record is None or record.levelno >= logging.WARNING or record.name != _BATCHED:
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
                    line = self.formatter.format(record) + "\n"
                except Exception as error:  # a bad record must not stop the logging
                    line = f"--- a log line from {record.name} failed: {error!r}\n"
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
_at_exit = False


def configure_logging(
    log_format: str = "text", level: int = logging.INFO, worker: int | None = None
) -> None:
    """Log to stderr, from a thread of its own; `worker` (of `serve --workers`) is named
    in every line. Turns off, for the whole process, what the formatters never print:
    the caller's frame, thread and process names (the logging HOWTO's "Optimization")."""
    global _writer, _at_exit
    stop_logging()
    formatter = JsonFormatter(worker) if log_format == "json" else TextFormatter(worker)
    _writer = _Writer(formatter, sys.stderr)
    if not _at_exit:
        atexit.register(stop_logging)
        _at_exit = True
    root = logging.getLogger()
    root.handlers[:] = [_Handoff(_writer)]
    root.setLevel(level)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def stop_logging() -> None:
    """Write the lines still queued and stop the writing thread (at exit, or before
    logging is configured again). Lines logged after go straight to stderr."""
    global _writer
    if _writer is None:
        return
    writer, _writer = _writer, None
    writer.stop()
    root = logging.getLogger()
    if any(isinstance(handler, _Handoff) for handler in root.handlers):
        direct = logging.StreamHandler()
        direct.setFormatter(writer.formatter)
        root.handlers[:] = [direct]
