"""JSON log lines carry the message and the extra fields, and no terminal colour codes."""

from __future__ import annotations

import logging

import orjson

from predictor.serving.logs import JsonFormatter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_uvicorns_color_message_is_left_out() -> None:
    # what uvicorn.Server logs at start-up
    record = _record(
        "Started server process [%d]",
        4242,
        color_message="Started server process [\x1b[36m%d\x1b[0m]",
    )

    text = JsonFormatter().format(record)

    line = orjson.loads(text)
    assert line["msg"] == "Started server process [4242]"
    assert "color_message" not in line
    assert "\x1b" not in text and "\\u001b" not in text


def test_other_extra_fields_are_kept() -> None:
    record = _record("batch done", records=3, model_version="7")

    line = orjson.loads(JsonFormatter().format(record))

    assert (line["records"], line["model_version"], line["logger"]) == (3, "7", "uvicorn.error")
