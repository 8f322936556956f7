"""The event log: every format round-trips the wire events; bad records are reported in place."""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    encode,
)
from stream_features.event_log import (
    COLUMNS,
    arrow_schema,
    count_records,
    iter_log,
    log_format,
    write_log,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FORMATS = ["log.jsonl", "log.jsonl.gz", "log.csv", "log.csv.gz", "log.parquet"]


def _order(n: int, **over: object) -> OrderCreated:
    fields: dict[str, object] = dict(
        order_id=f"o{n}",
        created_at=T0 + timedelta(seconds=n),
        market_id="m1",
        store_id=f"s{n % 3}",
        store_category="pizza, thin crust",  # a comma, to exercise CSV quoting
        order_protocol=1 + n % 7,
        total_items=3,
        subtotal=2500 + n,
        num_distinct_items=2,
        min_item_price=500,
        max_item_price=1500,
        estimated_order_place_duration_s=251,
        estimated_store_to_consumer_driving_duration_s=600,
    )
    fields.update(over)
    return OrderCreated.model_validate(fields)


def sample_events() -> list[Event]:
    """Every message kind, with and without its optional fields, in event-time order."""
    return [
        MarketSupplySnapshot(
            market_id="m1", at=T0, onshift_dashers=10, busy_dashers=4, outstanding_orders=3
        ),
        _order(1, store_lat=37.774929, store_lon=-122.4194, consumer_lat=37.7, consumer_lon=-122.4),
        _order(2),
        DasherEvent(dasher_id="m1-d7", market_id="m1", kind="shift_start", at=T0 + timedelta(0, 3)),
        OrderDelivered(
            order_id="o1",
            store_id="s1",
            market_id="m1",
            delivered_at=T0 + timedelta(minutes=40, microseconds=123),
            picked_up_at=T0 + timedelta(minutes=25),
        ),
        OrderDelivered(
            order_id="o2", store_id="s2", market_id="m1", delivered_at=T0 + timedelta(minutes=41)
        ),
    ]


def test_columns_are_exactly_the_union_of_the_message_fields() -> None:
    fields = {
        name
        for model in (OrderCreated, DasherEvent, MarketSupplySnapshot, OrderDelivered)
        for name in model.model_fields
    }
    assert set(COLUMNS) == fields
    assert arrow_schema().names == list(COLUMNS)


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_round_trips_the_events(tmp_path: Path, name: str) -> None:
    events = sample_events()
    path = tmp_path / name

    assert write_log(path, iter(events)) == len(events)
    lines = list(iter_log(path))

    assert [line.error for line in lines] == [None] * len(events)
    assert [line.event for line in lines] == events
    assert [encode(line.event) for line in lines if line.event] == [encode(e) for e in events]
    first = 2 if log_format(path) == "csv" else 1  # CSV: the header is line 1
    assert [line.line_no for line in lines] == list(range(first, first + len(events)))
    assert count_records(path) == len(events)


def test_jsonl_lines_are_exactly_the_wire_json(tmp_path: Path) -> None:
    events = sample_events()
    path = tmp_path / "log.jsonl"
    write_log(path, events)

    assert path.read_bytes().splitlines() == [encode(e) for e in events]


@pytest.mark.parametrize("name", FORMATS)
def test_an_empty_log_is_written_and_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_log(path, []) == 0
    assert list(iter_log(path)) == []


def test_parquet_columns_are_typed_for_batch_readers(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    write_log(path, sample_events())
    table = pq.read_table(path)

    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("subtotal").type == pa.int64()
    assert table.column("type").to_pylist()[:2] == ["MarketSupplySnapshot", "OrderCreated"]
    assert table.column("picked_up_at").null_count == 5


def test_a_malformed_jsonl_line_is_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    good = [encode(e) for e in sample_events()]
    bad_json = b'{"type": "OrderCreated", "order_id": '
    bad_value = orjson.dumps({**orjson.loads(good[1]), "subtotal": -5})
    path = tmp_path / "log.jsonl"
    # line 3 is not JSON, line 4 is blank (skipped), line 6 breaks the contract
    path.write_bytes(b"\n".join([good[0], good[1], bad_json, b"", good[2], bad_value, *good[3:]]))

    lines = list(iter_log(path))
    errors = [(line.line_no, line.error) for line in lines if line.error is not None]

    assert [no for no, _ in errors] == [3, 6]
    assert "not valid JSON" in str(errors[0][1])
    assert errors[1][1] is not None and errors[1][1].field == "subtotal"
    assert [line.event for line in lines if line.event] == sample_events()
    assert next(line.raw for line in lines if line.line_no == 3) == bad_json


def test_a_malformed_csv_row_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    write_log(path, sample_events())
    rows = path.read_text().splitlines()
    header = rows[0].split(",")
    broken = rows[2].replace("2501", "-3")  # line 3: o1's subtotal
    assert broken != rows[2]
    rows[2] = broken
    rows.insert(4, "OrderCreated,1,too,few")  # becomes line 5
    path.write_text("\n".join(rows) + "\n")

    lines = list(iter_log(path))
    errors = {line.line_no: line.error for line in lines if line.error is not None}

    assert set(errors) == {3, 5}
    assert errors[3] is not None and errors[3].field == "subtotal"
    assert f"expected {len(header)} fields, got 4" in str(errors[5])
    assert len([line for line in lines if line.event is not None]) == len(sample_events()) - 1
    assert [line.line_no for line in lines][-1] == len(rows)


def test_csv_from_elsewhere_may_hold_fewer_columns_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "recorded.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["delivered_at", "market_id", "order_id", "type", "store_id"])
        writer.writerow(["2026-03-02T12:40:00+00:00", "m1", "o9", "OrderDelivered", "s1"])

    (line,) = iter_log(path)

    assert isinstance(line.event, OrderDelivered)
    assert line.event.delivered_at == T0 + timedelta(minutes=40)


def test_a_bad_parquet_row_is_reported_with_its_row_number(tmp_path: Path) -> None:
    rows = [orjson.loads(encode(e)) for e in sample_events()]
    for row in rows:
        for key in ("created_at", "at", "delivered_at", "picked_up_at"):
            if key in row:
                row[key] = datetime.fromisoformat(row[key])
    rows[2]["total_items"] = 0  # row 3
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), path)

    lines = list(iter_log(path))

    assert [(line.line_no, line.error.field) for line in lines if line.error] == [
        (3, "total_items")
    ]
    assert len([line for line in lines if line.event]) == len(rows) - 1


def test_gzip_jsonl_is_really_compressed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl.gz"
    write_log(path, sample_events())
    assert gzip.decompress(path.read_bytes()).count(b"\n") == len(sample_events())


@pytest.mark.parametrize("name", ["log.txt", "log.json", "log.parquet.gz", "log"])
def test_an_unknown_suffix_is_refused_with_the_known_ones(name: str) -> None:
    with pytest.raises(ValueError, match=r"\.jsonl.*\.parquet"):
        log_format(name)
