"""Structured logs: one JSON object per line, from the standard library's ``logging``.

Fields passed with ``extra={...}`` become keys of the line, so a log shipper can filter on
``batch_records`` or ``model_version`` without parsing prose.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_LEFT_OUT = _STANDARD | {"color_message"}  # uvicorn's copy of msg with terminal colour codes


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message and the extra fields.

    >>> record = logging.LogRecord("eta", logging.INFO, "", 0, "batch done", (), None)
    >>> record.records = 3
    >>> line = orjson.loads(JsonFormatter().format(record))
    >>> line["level"], line["msg"], line["records"]
    ('info', 'batch done', 3)

    uvicorn's ``color_message`` (the message again, with ANSI colour codes) is left out: the
    line is for a log shipper, not a terminal.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _LEFT_OUT and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Send every logger's records to stderr, as JSON lines unless asked otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonFormatter() if json_lines else plain)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
