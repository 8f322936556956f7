"""Size limits hold before parsing wherever etastream reads messages: the stream worker's three
source topics (over ``ETA_MAX_MESSAGE_BYTES`` → dead letter with the reason), replay from event
log files (a rejected line with its number; the file reads on) and ``eta tail``."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from predictor.engines.options import pipeline_config
from predictor.serving.dlq import decode_dead_letter
from predictor.serving.pipeline import process_batch
from predictor.serving.records import RawRecord
from producers.tail import Shown, describe
from stream_features.contract import decode
from stream_features.event_log import iter_log, write_log
from stream_features.settings import Settings
from tests.fuzz.oracle import NOW_MS
from tests.fuzz.samples import VALID
from tests.serving_fakes import LinearModel, MemoryFeatures

LIMIT = 2048
FIVE_MB = 5_000_000


def padded(message: dict[str, object], size: int) -> bytes:
    """The message as JSON of exactly ``size`` bytes (whitespace before the closing brace)."""
    raw = orjson.dumps(message)
    assert len(raw) <= size
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


@pytest.fixture()
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ETA_MAX_MESSAGE_BYTES", str(LIMIT))
    return Settings()


@pytest.mark.parametrize("source", ["orders", "dasher-events", "deliveries"])
def test_each_source_topic_dead_letters_a_record_over_the_limit_without_parsing_it(
    settings: Settings, source: str
) -> None:
    topic = {
        "orders": settings.orders_topic,
        "dasher-events": settings.dasher_events_topic,
        "deliveries": settings.deliveries_topic,
    }[source]
    message = VALID[source][0]
    over = [
        padded(message, LIMIT + 1),  # valid JSON, valid message, one byte too many
        b"[" * FIVE_MB,  # a nesting error, if it were parsed
        b'{"pad":"' + b"\xff" * FIVE_MB + b'"}',  # a UTF-8 error, if it were parsed
    ]
    values = [padded(message, LIMIT), *over]
    records = [RawRecord(v, topic, 1, offset, b"k") for offset, v in enumerate(values)]

    result = process_batch(
        records, MemoryFeatures(), LinearModel(), now_ms=NOW_MS, config=pipeline_config(settings)
    )

    assert result.dead_letters_by_topic == {topic: len(over)}
    assert len(result.predictions) == (1 if source == "orders" else 0)
    for letter_record, value in zip(result.dead_letters, over, strict=True):
        letter = decode_dead_letter(letter_record.value)
        assert letter.reason == f"message of {len(value)} bytes is over the {LIMIT}-byte limit"
        assert letter.field is None
        assert letter.source_topic == topic
        assert base64.b64decode(letter.value_b64) == value  # nothing rejected disappears


def test_the_limit_cannot_be_set_below_1_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ETA_MAX_MESSAGE_BYTES", "10")
    with pytest.raises(ValidationError, match="max_message_bytes"):
        Settings()


# --- replay from event log files --------------------------------------------------------------

GOOD = orjson.dumps(VALID["orders"][0])
HUGE = orjson.dumps({**VALID["orders"][0], "store_category": "p" * FIVE_MB})


def outcomes(path: Path) -> list[tuple[int, str | None]]:
    return [
        (line.line_no, None if line.error is None else line.error.reason) for line in iter_log(path)
    ]


def test_a_5_mb_jsonl_line_is_rejected_by_size_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join([GOOD, HUGE, b"[" * 3000, GOOD]) + b"\n")

    assert outcomes(path) == [
        (1, None),
        (2, f"message of {len(HUGE)} bytes is over the 1000000-byte limit"),
        (3, "not valid JSON: depth limit exceeded: line 1 column 1026 (char 1025)"),
        (4, None),
    ]


def csv_log(tmp_path: Path, middle: bytes) -> Path:
    """A two-event CSV log with ``middle`` spliced in as line 3."""
    path = tmp_path / "history.csv"
    write_log(path, [decode(GOOD), decode(GOOD)])
    header, first, second = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([header, first, middle, second]) + b"\n")
    return path


def test_a_csv_field_of_5_mb_is_rejected_alone_and_the_file_reads_on(tmp_path: Path) -> None:
    lines = csv_log(tmp_path, b"").read_bytes().splitlines()
    path = csv_log(tmp_path, lines[1].replace(b"pizza", b"p" * FIVE_MB))

    assert outcomes(path) == [
        (2, None),
        (3, "not valid CSV: field larger than field limit (131072)"),
        (4, None),
    ]


def test_a_csv_record_that_is_not_utf8_is_rejected_with_its_bytes_kept(tmp_path: Path) -> None:
    lines = csv_log(tmp_path, b"").read_bytes().splitlines()
    bad = lines[1].replace(b"pizza", b"pi\xffza")
    path = csv_log(tmp_path, bad)

    read = list(iter_log(path))
    assert [(line.line_no, line.error and line.error.reason) for line in read] == [
        (2, None),
        (3, "not valid UTF-8"),
        (4, None),
    ]
    assert read[1].raw == bad


def test_a_parquet_row_over_the_limit_is_rejected_by_size(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stream_features.event_log import arrow_schema

    path = tmp_path / "history.parquet"
    write_log(path, [decode(GOOD)])
    rows = pq.read_table(path).to_pylist()
    rows.append({**rows[0], "store_category": "p" * FIVE_MB})
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), path)

    (first, second) = outcomes(path)
    assert first == (1, None)
    assert second[0] == 2 and second[1] is not None and "over the 1000000-byte limit" in second[1]


# --- eta tail ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [True, False])
def test_tail_parses_nothing_over_the_largest_message_a_topic_takes(strict: bool) -> None:
    value = b"[" * 11_000_000
    assert describe(value, strict) == (
        None,
        "message of 11000000 bytes is over the 10485760-byte limit",
    )


@pytest.mark.parametrize(
    "value",
    [
        b'{"type":"[/]"}',  # rich markup: crashed `eta tail` with MarkupError
        b'{"type":"\\u001b[2J\\u001b]0;owned\\u0007"}',  # clear screen, set the window title
        b'{"type":"OrderCreated"}\x1b[31m',
    ],
    ids=["markup", "escapes-in-json", "raw-escape"],
)
def test_tail_prints_a_hostile_message_inert(
    value: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    from producers.console import tail_printer

    message, reason = describe(value)
    tail_printer()(Shown(0, 1, None, message, reason, value))

    err = capsys.readouterr().err
    assert "undecodable" in err and "partition 0 offset 1" in err
    assert "\x1b" not in err and "\x07" not in err


def test_tail_quotes_a_prediction_field_name_printably() -> None:
    """Found by the fuzzer in CI: one flipped bit turns ``_`` into DEL in a field's name, and
    the prediction model's reason quoted it raw. Predictions and dead letters now give their
    reasons through the contract's one ``rejection``."""
    value = (
        b'{"type":"DeliveryPrediction","schema_version":1,"order_id":"o-1","store_id":"s42",'
        b'"market_id":"m1","created_at":"2026-03-01T12:00:00Z","predicted_duration_s":2460.5,'
        b'"predicted_delivery_at":"2026-03-01T12:41:00.500000Z","model_name":"eta",'
        b'"model_version":"3","mode":"streaming","served_at":"2026-03-01T12:00:00.020000Z",'
        b'"feature\x7ffreshness_s":1.5}'
    )
    message, reason = describe(value)
    assert message is None and reason is not None
    assert reason.isprintable() and "feature\\x7ffreshness_s" in reason
