"""The event contract: what travels on each topic, as pydantic v2 models (JSON on the wire).

Every message carries ``type`` (its model's name) and ``schema_version``. Money is in cents,
durations in seconds, times are timezone-aware and normalised to UTC. ``decode`` is the one
door from bytes to events: it either returns a valid event or raises ``RejectedMessage`` with a
reason; nothing else escapes it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from stream_features.errors import RejectedMessage

if TYPE_CHECKING:  # the fast decoder's types; wire_decode imports this module at run time
    from stream_features.wire_decode import AnyEvent

__all__ = [
    "BOOLEAN_REASON",
    "SCHEMA_VERSION",
    "STREAM_MODE",
    "DasherEvent",
    "DeadLetter",
    "DeliveryPrediction",
    "Event",
    "Explanation",
    "Id",
    "IdText",
    "MarketSupplySnapshot",
    "OrderCreated",
    "OrderDelivered",
    "ShadowPrediction",
    "as_utc",
    "boolean_fields",
    "check_object",
    "check_size",
    "decode",
    "encode",
    "event_id",
    "event_time",
    "id_text",
    "json_schemas",
    "rejection",
    "shown",
    "to_json",
    "to_ms",
]

SCHEMA_VERSION = 1
STREAM_MODE: Final = "streaming"
"""The ``mode`` of what the stream served, and what a shadow record or pair kept before records
carried a mode reads as (only the stream wrote them then)."""
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)

Cents = Annotated[int, Field(ge=0, le=100_000_000)]
Seconds = Annotated[int, Field(ge=0, le=7 * 86400)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
IdText = Annotated[str, Field(min_length=1, max_length=64, pattern=_ID_PATTERN)]
"""An id as etastream writes it (in predictions): 1 to 64 of ``A-Z a-z 0-9 _ . : -``."""
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Lon = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


def id_text(value: Any) -> Any:
    """A JSON integer id as its decimal string, anything else as given (for the string rules).

    Real marketplace exports number their markets and stores; ``1`` and ``"1"`` are one id.
    A boolean never gets here (``check_object`` rejects it first), and a float stays a float,
    so ``1.0`` is refused as not a string.

    >>> id_text(42), id_text("s42"), id_text(4.0)
    ('42', 's42', 4.0)
    """
    return str(value) if type(value) is int else value


Id = Annotated[
    IdText,
    BeforeValidator(id_text),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 64, "pattern": _ID_PATTERN},
                {"type": "integer"},
            ],
            "description": 'a string, or a JSON integer read as its decimal string (42 is "42")',
        }
    ),
]
"""An id on an event: ``IdText``, or a JSON integer normalised to its decimal string."""


def as_utc(value: datetime) -> datetime:
    """An aware timestamp normalised to UTC, refused outside 2000..2100 (both decoders' rule).

    >>> as_utc(datetime.fromisoformat("2026-03-01T14:00:00+02:00")).isoformat()
    '2026-03-01T12:00:00+00:00'
    >>> as_utc(datetime(1999, 12, 31, 23, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    ValueError: timestamp 1999-12-31T23:00:00+00:00 is outside 2000..2100
    """
    try:
        if value.tzinfo is not UTC:  # the fast decoder's "Z" already is: skip a copy
            value = value.astimezone(UTC)
    except OverflowError:  # year 1 at +14:00 or 9999 at -14:00: UTC is outside datetime's range
        raise ValueError(f"timestamp {value.isoformat()} is outside 2000..2100") from None
    if not _EARLIEST <= value < _LATEST:
        raise ValueError(f"timestamp {value.isoformat()} is outside 2000..2100")
    return value


def _as_utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    schema_version: Literal[1] = 1


class _Event(_Message):
    """A stream event: its fields' rules reject it (``decode``); the rules across fields are
    data-quality findings (``stream_features.quality``), which keep it."""


_OPTIONAL = "optional: missing or null reaches the model as missing (NaN)"


class OrderCreated(_Event):
    """A consumer placed an order (topic ``orders``, key ``store_id``).

    Required: what a prediction cannot do without (the ids, ``created_at``, the basket's size
    and subtotal). The store's category, the order protocol, the item prices and the two
    estimates are optional: real exports miss them now and then, and the model reads a
    missing one as missing rather than costing the order its ETA.
    """

    type: Literal["OrderCreated"] = "OrderCreated"
    order_id: Id
    created_at: AwareDatetime
    market_id: Id
    store_id: Id
    store_category: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description=_OPTIONAL
    )
    order_protocol: Annotated[int, Field(ge=0, le=100)] | None = Field(None, description=_OPTIONAL)
    total_items: Annotated[int, Field(ge=1, le=10_000)]
    subtotal: Cents
    num_distinct_items: Annotated[int, Field(ge=1, le=10_000)]
    min_item_price: Cents | None = Field(None, description=_OPTIONAL)
    max_item_price: Cents | None = Field(None, description=_OPTIONAL)
    estimated_order_place_duration_s: Seconds | None = Field(None, description=_OPTIONAL)
    estimated_store_to_consumer_driving_duration_s: Seconds | None = Field(
        None, description=_OPTIONAL
    )
    store_lat: Lat | None = None
    store_lon: Lon | None = None
    consumer_lat: Lat | None = None
    consumer_lon: Lon | None = None

    _utc_created = field_validator("created_at")(as_utc)


DasherEventKind = Literal["shift_start", "shift_end", "assigned", "freed"]


class DasherEvent(_Event):
    """One dasher changed state (topic ``dasher-events``, key ``market_id``)."""

    type: Literal["DasherEvent"] = "DasherEvent"
    dasher_id: Id
    market_id: Id
    kind: DasherEventKind
    at: AwareDatetime

    _utc_at = field_validator("at")(as_utc)


class MarketSupplySnapshot(_Event):
    """Counts a dispatch system publishes per market (topic ``dasher-events``)."""

    type: Literal["MarketSupplySnapshot"] = "MarketSupplySnapshot"
    market_id: Id
    at: AwareDatetime
    onshift_dashers: Count
    busy_dashers: Count
    outstanding_orders: Count

    _utc_at = field_validator("at")(as_utc)


class OrderDelivered(_Event):
    """Ground truth: the order reached the consumer (topic ``deliveries``, key ``store_id``)."""

    type: Literal["OrderDelivered"] = "OrderDelivered"
    order_id: Id
    store_id: Id
    market_id: Id
    delivered_at: AwareDatetime
    picked_up_at: AwareDatetime | None = None

    _utc_times = field_validator("delivered_at", "picked_up_at")(_as_utc_or_none)


Event = Annotated[
    OrderCreated | DasherEvent | MarketSupplySnapshot | OrderDelivered,
    Field(discriminator="type"),
]
_EVENT: TypeAdapter[OrderCreated | DasherEvent | MarketSupplySnapshot | OrderDelivered] = (
    TypeAdapter(Event)
)
_EVENT_NAMES = {"OrderCreated", "DasherEvent", "MarketSupplySnapshot", "OrderDelivered"}


_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Explanation(BaseModel):
    """Why the model said what it said: each input's contribution in seconds (LightGBM's
    ``pred_contrib``, SHAP values of the trees); ``bias_s`` plus every contribution is the
    model's output, which is ``predicted_duration_s`` unless that was clipped at zero."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bias_s: Annotated[float, Field(allow_inf_nan=False)] = Field(
        description="the model's expected output before any input is known"
    )
    contributions_s: dict[str, float] = Field(
        description="feature name -> seconds it adds (negative: removes), every model input"
    )
    top: list[str] = Field(description="the largest five contributions as readable text")


class DeliveryPrediction(_Message):
    """What etastream emits (topic ``delivery-eta-predictions``, key ``order_id``).

    ``predicted_duration_p10_s`` and ``predicted_duration_p90_s`` (added in schema_version 1,
    optional: models trained without a range, and older producers, leave them out) are the ETA
    range: 80% of deliveries are meant to take between them, and they always hold
    ``predicted_duration_s``.
    """

    type: Literal["DeliveryPrediction"] = "DeliveryPrediction"
    order_id: IdText
    store_id: IdText
    market_id: IdText
    created_at: AwareDatetime
    predicted_duration_s: _Seconds
    predicted_duration_p10_s: _Seconds | None = Field(
        None, description="lower end of the ETA range (10th percentile), seconds"
    )
    predicted_duration_p90_s: _Seconds | None = Field(
        None, description="upper end of the ETA range (90th percentile), seconds"
    )
    predicted_delivery_at: AwareDatetime
    model_name: str
    model_version: str
    mode: Literal["streaming", "online", "batch"]
    served_at: AwareDatetime
    feature_freshness_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="age of the oldest entity state behind the features (event time)"
    )
    features: dict[str, float] | None = Field(
        None, description="the model inputs, when the worker is asked to include them"
    )
    explanation: Explanation | None = Field(
        None, description="each input's contribution, when asked for (?explain=true)"
    )

    @model_validator(mode="after")
    def _range_holds_the_eta(self) -> DeliveryPrediction:
        low, high = self.predicted_duration_p10_s, self.predicted_duration_p90_s
        if (low is None) != (high is None):
            raise ValueError("predicted_duration_p10_s and _p90_s come together or not at all")
        if low is not None and high is not None and not low <= self.predicted_duration_s <= high:
            raise ValueError(
                f"the range {low}..{high} s does not hold predicted_duration_s "
                f"{self.predicted_duration_s}"
            )
        return self


class ShadowPrediction(_Message):
    """A challenger's prediction next to the champion's (topic ``delivery-eta-shadow``, key
    ``order_id``).

    The stream worker (and the HTTP API) writes one per served order when ``ETA_SHADOW_STAGE``
    names a stage: the same feature row scored by the model at that stage, on the record only
    (never served).
    Produced best-effort, at most once: a shadow record may be missing, never a prediction.
    """

    type: Literal["ShadowPrediction"] = "ShadowPrediction"
    order_id: IdText
    store_id: IdText
    market_id: IdText
    created_at: AwareDatetime
    model_name: str
    champion_version: str = Field(description="the version that served the order")
    champion_predicted_duration_s: _Seconds = Field(description="what was served, seconds")
    challenger_stage: str = Field(description="the registry stage the challenger follows")
    challenger_version: str
    challenger_predicted_duration_s: _Seconds
    served_at: AwareDatetime
    mode: Literal["streaming", "online"] = Field(
        STREAM_MODE,
        description="the path that served the order, as its prediction's mode: an order scored "
        "by both the stream and the HTTP API has a shadow record of each",
    )


class DeadLetter(_Message):
    """A rejected message with where it came from and why (topic ``orders.dlq``)."""

    type: Literal["DeadLetter"] = "DeadLetter"
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    key: str | None = Field(None, description="the original key, UTF-8 with replacement")
    value_b64: str = Field(description="the original bytes, base64")
    reason: str
    field: str | None = None
    failed_at: AwareDatetime


def shown(text: str, limit: int | None = 200) -> str:
    """``text`` safe to print and log: control characters escaped, about ``limit`` characters
    (all of it with None).

    Reasons quote the sender's values (an unknown tag, an unknown field's name); a hostile sender
    must not be able to write terminal escapes, fake log lines or megabytes into them. A long
    text keeps its start and its end (where pydantic says what was expected).

    >>> shown("a\\n\\x1b[2Jb")
    'a\\\\n\\\\x1b[2Jb'
    >>> shown("x" * 150 + "y" * 150, limit=20)
    'xxxxx… (280 characters cut) …yyyyyyyyyyyyyyy'
    """
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit is None or len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    return f"{text[:head]}… ({len(text) - limit} characters cut) …{text[-tail:]}"


def rejection(exc: ValidationError) -> RejectedMessage:
    """pydantic's first error as a rejection: the field's path and the reason, both ``shown``
    (a field named by the sender is the sender's text), and how many more errors there were."""
    err = exc.errors(include_url=False)[0]
    loc = [str(part) for part in err["loc"]]
    if loc and loc[0] in _EVENT_NAMES:  # the union's tag is not part of the field path
        loc = loc[1:]
    field = ".".join(loc) or ("type" if err["type"].startswith("union_tag") else None)
    more = exc.error_count() - 1
    reason = shown(err["msg"]) + (f" (and {more} more)" if more else "")
    return RejectedMessage(reason, None if field is None else shown(field, 100))


BOOLEAN_REASON = "true/false is not a valid value: no event field is a boolean"


def boolean_fields(data: dict[str, Any]) -> list[str]:
    """Keys whose value is a JSON boolean. No event field is one, and pydantic would read
    ``true`` as 1 (one item, one dasher): a boolean is a sender's bug, never a number.

    >>> boolean_fields({"total_items": True, "subtotal": 1, "store_lat": False})
    ['total_items', 'store_lat']
    """
    return [key for key, value in data.items() if value is True or value is False]


def _size(raw: bytes | bytearray | memoryview | str) -> int:
    """Bytes on the wire: a str counts as its UTF-8 encoding, a memoryview by its ``nbytes``.

    >>> _size("é"), _size(memoryview(b"ab")), _size(b"abc")
    (2, 2, 3)
    """
    if isinstance(raw, str):
        return len(raw) if raw.isascii() else len(raw.encode("utf-8", "surrogatepass"))
    return raw.nbytes if isinstance(raw, memoryview) else len(raw)


def check_size(raw: bytes | bytearray | memoryview | str, max_bytes: int) -> None:
    """Reject a message over ``max_bytes`` before any parsing (``decode``'s first check; the
    HTTP API applies it to each order too).

    >>> check_size(b"{}", 2)
    >>> check_size(b"{ }", 2)
    Traceback (most recent call last):
    ...
    stream_features.errors.RejectedMessage: message of 3 bytes is over the 2-byte limit
    """
    size = _size(raw)
    if size > max_bytes:
        raise RejectedMessage(f"message of {size} bytes is over the {max_bytes}-byte limit")


def check_object(data: Any) -> dict[str, Any]:
    """The checks ``decode`` makes of parsed JSON before pydantic reads it: an object, a known
    ``schema_version``, no booleans. The HTTP API runs them on each order too.

    >>> check_object({"schema_version": 2})
    Traceback (most recent call last):
    ...
    stream_features.errors.RejectedMessage: schema_version: unknown schema_version 2; this ...
    """
    if not isinstance(data, dict):
        raise RejectedMessage(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:  # true and 1.0 are not 1 either
        raise RejectedMessage(
            f"unknown schema_version {shown(repr(version), 40)}; this build reads {SCHEMA_VERSION}",
            "schema_version",
        )
    flagged = boolean_fields(data)
    if flagged:
        raise RejectedMessage(BOOLEAN_REASON, shown(flagged[0], 100) or None)
    return data


def decode(raw: bytes | bytearray | memoryview | str, max_bytes: int = 1_000_000) -> Event:
    """Bytes to a validated event, or ``RejectedMessage`` with the reason.

    >>> decode(b'{"type":"DasherEvent","dasher_id":"d1","market_id":"m1",'
    ...        b'"kind":"assigned","at":"2026-01-01T12:00:00Z"}').kind
    'assigned'
    >>> decode(b'{"type":"Nope"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_features.errors.RejectedMessage: type: Input tag 'Nope' found using 'type' does not ...
    """
    check_size(raw, max_bytes)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RejectedMessage(f"not valid JSON: {exc}") from None
    except RecursionError:  # pragma: no cover - orjson caps depth itself
        raise RejectedMessage("JSON nested too deeply") from None
    data = check_object(data)
    try:
        return _EVENT.validate_python(data)
    except ValidationError as exc:
        raise rejection(exc) from None
    except (ValueError, TypeError, OverflowError) as exc:  # defensive: validators raising oddly
        raise RejectedMessage(shown(str(exc)) or type(exc).__name__) from None


to_json = msgspec.json.Encoder().encode
"""JSON bytes of a value: UTC datetimes as ``...Z``, shortest round-trip floats, NaN as null.

Every message etastream writes in bulk goes through this one writer (events here, predictions
in ``predictor.serving.encoding``, views in ``state_codec``), so the paths write the same bytes.
msgspec rather than orjson, for one measured reason: a worker keeps a batch's outputs until they
are produced, and kept that way ``orjson.dumps`` took 6.8 us a prediction (it sizes each buffer
at 1 KiB first, and glibc then trades the batch's memory back and forth with the kernel)
against 0.5 us when each output was dropped at once; msgspec took 0.9 us either way.
"""


def encode(message: BaseModel) -> bytes:
    """A message as wire JSON (UTC timestamps with ``Z``), ``type`` and version included."""
    return to_json(message.model_dump(mode="json", exclude_none=True))


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware timestamp.

    >>> to_ms(datetime(2026, 1, 1, tzinfo=UTC))
    1767225600000
    """
    return math.floor(value.timestamp() * 1000 + 0.5)


def event_time(event: AnyEvent) -> datetime:
    """The event-time stamp that drives windows for any event kind, from either decoder
    (dispatch on ``event.type``: ``wire_decode``'s Structs are not the pydantic classes)."""
    if event.type == "OrderCreated":
        return event.created_at
    if event.type == "OrderDelivered":
        return event.delivered_at
    return event.at


def event_id(event: AnyEvent) -> str:
    """A stable id for deduplication: the same event replayed has the same id, whichever
    decoder read it.

    >>> event_id(decode(b'{"type":"DasherEvent","dasher_id":"d1","market_id":"m1",'
    ...                 b'"kind":"assigned","at":"2026-01-01T12:00:00Z"}'))
    'DasherEvent:d1:assigned:1767268800000'
    """
    if event.type == "OrderCreated":
        return f"OrderCreated:{event.order_id}"
    if event.type == "OrderDelivered":
        return f"OrderDelivered:{event.order_id}"
    if event.type == "DasherEvent":
        return f"DasherEvent:{event.dasher_id}:{event.kind}:{to_ms(event.at)}"
    return f"MarketSupplySnapshot:{event.market_id}:{to_ms(event.at)}"


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every message on the wire, by message name."""
    models: list[type[BaseModel]] = [
        OrderCreated,
        DasherEvent,
        MarketSupplySnapshot,
        OrderDelivered,
        DeliveryPrediction,
        ShadowPrediction,
        DeadLetter,
    ]
    return {m.__name__: m.model_json_schema() for m in models}
