"""Logging for `modelwire serve`: readable text, or one JSON object per line.

Lines are formatted and written by a thread of their own (the stdlib's QueueListener):
the access log writes a line per call, and formatting it and writing it to stderr on the
event loop cost each call a syscall and a few microseconds of formatting that the loop
does not need to spend. The queue is flushed when the process exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
from datetime import UTC, datetime

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


_listener: logging.handlers.QueueListener | None = None


def configure_logging(
    log_format: str = "text", level: int = logging.INFO, worker: int | None = None
) -> None:
    """Log to stderr, from a thread of its own; `worker` (of `serve --workers`) is named
    in every line."""
    global _listener
    stop_logging()
    handler = logging.StreamHandler()
    formatter = JsonFormatter(worker) if log_format == "json" else TextFormatter(worker)
    handler.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, handler)
    _listener.start()
    atexit.register(stop_logging)
    root = logging.getLogger()
    root.handlers[:] = [_Handoff(records)]
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
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None
