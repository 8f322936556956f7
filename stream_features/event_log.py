"""The event log: all kinds of events in event-time order, one per line (JSONL) or row.

Each record names its message in ``type`` and holds exactly the fields of the wire JSON that
``contract.encode`` writes, so a log can be replayed onto the topics, turned into batch features
and training sets, or recorded from a real marketplace. Reading goes through ``contract.decode``
row by row: validation is the wire's, and a bad record becomes a ``LogLine`` with an error and
its line number while the rest of the file is read on.

Formats follow the suffix: ``.jsonl`` / ``.jsonl.gz`` (the wire JSON, one object per line),
``.csv`` / ``.csv.gz`` and ``.parquet`` (one column per field, the union of all messages'
fields in ``COLUMNS`` order, empty/null where a field does not apply; CSV timestamps are
ISO-8601 UTC strings, Parquet ones ``timestamp[us, tz=UTC]``).

Line numbers: JSONL counts every physical line from 1 (blank lines are skipped, not reported);
CSV counts the header as line 1, so the first record is line 2; Parquet numbers rows from 1.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson

from stream_features.contract import Event, decode, encode
from stream_features.errors import RejectedMessage
from stream_features.quality import Finding, screen

__all__ = [
    "COLUMNS",
    "LogFormat",
    "LogLine",
    "arrow_schema",
    "count_records",
    "iter_log",
    "log_format",
    "write_log",
]

LogFormat = Literal["jsonl", "csv", "parquet"]
_ColumnKind = Literal["str", "int", "float", "time"]

# The union of the four messages' fields, in a stable order. A unit test checks it against the
# contract's models, so a new field fails loudly here instead of silently vanishing from logs.
COLUMNS: Final[dict[str, _ColumnKind]] = {
    "type": "str",
    "schema_version": "int",
    "order_id": "str",
    "created_at": "time",
    "market_id": "str",
    "store_id": "str",
    "store_category": "str",
    "order_protocol": "int",
    "total_items": "int",
    "subtotal": "int",
    "num_distinct_items": "int",
    "min_item_price": "int",
    "max_item_price": "int",
    "estimated_order_place_duration_s": "int",
    "estimated_store_to_consumer_driving_duration_s": "int",
    "store_lat": "float",
    "store_lon": "float",
    "consumer_lat": "float",
    "consumer_lon": "float",
    "dasher_id": "str",
    "kind": "str",
    "at": "time",
    "onshift_dashers": "int",
    "busy_dashers": "int",
    "outstanding_orders": "int",
    "delivered_at": "time",
    "picked_up_at": "time",
}
_PARQUET_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class LogLine:
    """One record of a log: the event, or the reason it was rejected, never both.

    ``raw`` is the line as written for JSONL and CSV, and the JSON object built from the row
    for Parquet (what went into ``decode``). ``findings`` are the event's data-quality findings
    (``stream_features.quality``): it is kept with them.
    """

    line_no: int
    event: Event | None
    error: RejectedMessage | None
    raw: bytes
    findings: list[Finding] = field(default_factory=list)


def log_format(path: str | Path) -> LogFormat:
    """The log format a file name asks for, by suffix.

    >>> log_format("history.parquet"), log_format("h.jsonl.gz"), log_format("h.CSV")
    ('parquet', 'jsonl', 'csv')
    """
    name = Path(path).name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt  # type: ignore[return-value]  # fmt is one of the Literal's values
    if name.endswith(".parquet") and not Path(path).name.lower().endswith(".gz"):
        return "parquet"
    raise ValueError(
        f"{Path(path).name!r}: an event log is .jsonl, .jsonl.gz, .csv, .csv.gz or .parquet"
    )


def _open(path: Path, mode: Literal["rb", "wb"]) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, mode)  # type: ignore[return-value]  # binary mode: a GzipFile, IO[bytes]
    return path.open(mode)


# --- writing -------------------------------------------------------------------------------


def write_log(path: str | Path, events: Iterable[Event]) -> int:
    """Write ``events`` in the order given to ``path`` (format by suffix); return the count.

    Streams: JSONL and CSV write as they go, Parquet in row groups of 64k events, so a long
    history never sits in memory.
    """
    path = Path(path)
    fmt = log_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        return _write_jsonl(path, events)
    if fmt == "csv":
        return _write_csv(path, events)
    return _write_parquet(path, events)


def _write_jsonl(path: Path, events: Iterable[Event]) -> int:
    count = 0
    with _open(path, "wb") as out:
        for event in events:
            out.write(encode(event))
            out.write(b"\n")
            count += 1
    return count


def _write_csv(path: Path, events: Iterable[Event]) -> int:
    count = 0
    with _open(path, "wb") as raw, io.TextIOWrapper(raw, "utf-8", newline="") as text:
        writer = csv.DictWriter(text, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for event in events:
            writer.writerow(orjson.loads(encode(event)))
            count += 1
    return count


def arrow_schema() -> Any:
    """The Parquet schema of a log: one nullable column per field of ``COLUMNS``."""
    import pyarrow as pa

    types = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "time": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in COLUMNS.items()])


def _write_parquet(path: Path, events: Iterable[Event]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    rows: list[dict[str, Any]] = []
    count = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for event in events:
            # a model's __dict__ holds exactly its field values (extra="forbid"); pyarrow reads
            # the columns from it in C, about 15x faster than getattr per column
            rows.append(event.__dict__)
            count += 1
            if len(rows) == _PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows.clear()
        if rows or count == 0:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    return count


# --- reading -------------------------------------------------------------------------------


def iter_log(path: str | Path, *, strict: bool = False) -> Iterator[LogLine]:
    """Every record of a log in file order, each decoded and validated as on the wire.

    A malformed record yields a ``LogLine`` whose ``error`` says why (with its line number);
    the records after it are read as usual. Only an unreadable file raises. A record with
    data-quality findings is kept with them, or with ``strict`` (``ETA_CONTRACT_STRICT``)
    rejected for the first, as the stream worker does.
    """
    path = Path(path)
    fmt = log_format(path)
    if fmt == "jsonl":
        return _iter_jsonl(path, strict)
    if fmt == "csv":
        return _iter_csv(path, strict)
    return _iter_parquet(path, strict)


def _line(line_no: int, raw: bytes, strict: bool, payload: bytes | None = None) -> LogLine:
    try:
        event = decode(raw if payload is None else payload)
        return LogLine(line_no, event, None, raw, screen(event, strict=strict))
    except RejectedMessage as exc:
        return LogLine(line_no, None, exc, raw)


def _iter_jsonl(path: Path, strict: bool) -> Iterator[LogLine]:
    with _open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            raw = line.rstrip(b"\r\n")
            if raw.strip():
                yield _line(line_no, raw, strict)


def _typed(name: str, value: str) -> Any:
    """A CSV cell as its column's JSON type; a cell that does not parse is left for decode.

    >>> _typed("total_items", "3"), _typed("store_lat", "37.5"), _typed("total_items", "x")
    (3, 37.5, 'x')
    """
    kind = COLUMNS.get(name, "str")
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        return value
    return value


def _iter_csv(path: Path, strict: bool) -> Iterator[LogLine]:
    consumed: list[str] = []

    def lines(text: IO[str]) -> Iterator[str]:
        for line in text:
            consumed.append(line)
            yield line

    # surrogateescape: a record with bytes that are not UTF-8 is rejected alone (below), and
    # its raw bytes are kept as written
    with (
        _open(path, "rb") as raw_file,
        io.TextIOWrapper(raw_file, "utf-8", errors="surrogateescape", newline="") as text,
    ):
        reader = csv.reader(lines(text))
        try:
            header = next(reader, None)
            if header is not None:
                ",".join(header).encode()
        except (csv.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"{path.name}: the CSV header cannot be read ({exc})") from None
        if header is None:
            return
        consumed.clear()
        line_no = 2
        while True:
            try:
                row: list[str] | None = next(reader)
                problem = None
            except StopIteration:
                break
            except csv.Error as exc:  # a field over csv.field_size_limit(): this record only
                row, problem = None, f"not valid CSV: {exc}"
            text_line = "".join(consumed).rstrip("\r\n")
            start, line_no = line_no, line_no + len(consumed)
            consumed.clear()
            try:
                raw = text_line.encode()
            except UnicodeEncodeError:
                raw = text_line.encode("utf-8", "surrogateescape")
                problem = problem or "not valid UTF-8"
            if row is None or problem is not None:
                yield LogLine(start, None, RejectedMessage(problem or "not valid CSV"), raw)
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                error = RejectedMessage(f"expected {len(header)} fields, got {len(row)}")
                yield LogLine(start, None, error, raw)
                continue
            record = {k: _typed(k, v) for k, v in zip(header, row, strict=True) if v != ""}
            yield _line(start, raw, strict, orjson.dumps(record))


def _json_default(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} value has no JSON form")


def _iter_parquet(path: Path, strict: bool) -> Iterator[LogLine]:
    import pyarrow.parquet as pq

    row_no = 0
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                row_no += 1
                record = {k: v for k, v in row.items() if v is not None}
                try:
                    raw = orjson.dumps(record, default=_json_default)
                except TypeError as exc:
                    yield LogLine(row_no, None, RejectedMessage(str(exc)), repr(record).encode())
                    continue
                yield _line(row_no, raw, strict)


def count_records(path: str | Path) -> int:
    """How many records a log holds (for progress bars): non-blank lines or Parquet rows.

    For CSV this counts physical lines after the header, an upper bound when a quoted field
    spans lines.
    """
    path = Path(path)
    fmt = log_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as parquet:
            return int(parquet.metadata.num_rows)
    with _open(path, "rb") as f:
        count = sum(1 for line in f if line.strip())
    return max(count - 1, 0) if fmt == "csv" else count
