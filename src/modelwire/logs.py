"""Logging for `modelwire serve`: readable text, or one JSON object per line."""

from __future__ import annotations

import json
import logging
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


def configure_logging(
    log_format: str = "text", level: int = logging.INFO, worker: int | None = None
) -> None:
    """Log to stderr; `worker` (of `serve --workers`) is named in every line."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter(worker) if log_format == "json" else TextFormatter(worker)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
