"""Logging for `modelwire serve`: readable text, or one JSON object per line.

Lines are formatted and written by a thread of their own: the access log writes a line
per call, and formatting it and writing it to stderr on the event loop cost each call a
syscall and a few microseconds that the loop does not need to spend. The thread writes
whatever has queued up in one go, up to a pipe's atomic write (the stdlib's
QueueListener would write, and flush, line by line: a syscall per call again). The queue
is flushed when the process exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import threading
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


class _Handoff(logging.handlers.QueueHandler):
    """Puts records on the queue as they are, their message resolved now (its arguments
    may change later). The stdlib's QueueHandler would format them here, on the calling
    thread, and drop their exception for pickling, which an in-process queue needs not."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        return record


#: The most one write holds: a pipe writes up to PIPE_BUF (4096) bytes in one piece, so
#: the lines of several worker processes sharing stderr never interleave mid-line.
_WRITE_BYTES = 4096


class _Writer:
    """The thread that formats queued records and writes them, a batch at a time."""

    def __init__(self, formatter: logging.Formatter, stream: TextIO) -> None:
        self.records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self.formatter = formatter
        self._stream = stream
        self._failed = False
        self._thread = threading.Thread(target=self._write, name="modelwire-log", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while True:
            batch = [self.records.get()]
            while not self.records.empty() and len(batch) < 1024:
                batch.append(self.records.get_nowait())
            chunk: list[str] = []
            size = 0
            for record in batch:
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
        self.records.put(None)
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
    root.handlers[:] = [_Handoff(_writer.records)]
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
