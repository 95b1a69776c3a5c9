"""Logging for `modelwire serve`: readable text, or one JSON object per line.

Lines are formatted and written by a thread of their own: the access log writes a line
per call, and formatting it and writing it to stderr on the event loop cost each call a
syscall and a few microseconds that the loop does not need to spend. The thread writes
whatever has queued up in one go (the stdlib's QueueListener would write, and flush, line
by line: a syscall per call again). The queue is flushed when the process exits.
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


class _Writer:
    """The thread that formats queued records and writes them, a batch at a time."""

    def __init__(self, formatter: logging.Formatter, stream: TextIO) -> None:
        self.records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._formatter = formatter
        self._stream = stream
        self._thread = threading.Thread(target=self._write, name="modelwire-log", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while True:
            batch = [self.records.get()]
            while not self.records.empty() and len(batch) < 1024:
                batch.append(self.records.get_nowait())
            lines: list[str] = []
            for record in batch:
                if record is None:
                    self._flush(lines)
                    return
                try:
                    lines.append(self._formatter.format(record) + "\n")
                except Exception as error:  # a bad record must not stop the logging
                    lines.append(f"--- a log line from {record.name} failed: {error!r}\n")
            self._flush(lines)

    def _flush(self, lines: list[str]) -> None:
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()

    def stop(self) -> None:
        self.records.put(None)
        self._thread.join()


_writer: _Writer | None = None


def configure_logging(
    log_format: str = "text", level: int = logging.INFO, worker: int | None = None
) -> None:
    """Log to stderr, from a thread of its own; `worker` (of `serve --workers`) is named
    in every line."""
    global _writer
    stop_logging()
    formatter = JsonFormatter(worker) if log_format == "json" else TextFormatter(worker)
    _writer = _Writer(formatter, sys.stderr)
    atexit.register(stop_logging)
    root = logging.getLogger()
    root.handlers[:] = [_Handoff(_writer.records)]
    root.setLevel(level)
    # What the formatters never print, the records need not gather (the logging HOWTO's
    # "Optimization"): the caller's frame, thread, process and multiprocessing names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def stop_logging() -> None:
    """Write the lines still queued and stop the writing thread (at exit, or before
    logging is configured again)."""
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None
