"""The stream worker's decoder: the contract's rules at msgspec speed, with ``decode``'s answers.

``contract.decode`` (pydantic) costs 3-5 µs a valid event and ``model_construct`` no less, too
much at tens of thousands of events a second per core. ``decode_fast`` reads the bytes straight
into msgspec Structs (about 1 µs) that carry the same attribute names, Python value types and
``type`` string as the pydantic models, so the stream path reads either kind alike (dispatch on
``event.type``, never ``isinstance`` of a pydantic class).

One contract, not two:

- The Struct types a message is decoded into are derived from the pydantic models at import
  (``_derive``): field names, types, bounds, lengths, patterns, literals and defaults. A field
  the derivation does not understand fails the import rather than being read more loosely.
- The classes below (``OrderCreatedWire`` ...) declare only names and Python types, for mypy
  and ``isinstance``; the decoded Structs are subclasses of them, and a unit test holds their
  names, types and defaults to the models'.
- UTC normalisation and the 2000..2100 range are the contract's own function (``as_utc``),
  run from the Struct's ``__post_init__``; so is its ``id_text`` for an id that came as a JSON
  integer (only then: a string id pays nothing). Rules across fields are not rejections but
  data-quality findings (``stream_features.quality``), computed from the decoded event by one
  function for both decoders.
- A message msgspec refuses is handed to ``contract.decode``, so every reason and field of a
  rejection is pydantic's, word for word; what pydantic's laxer reading accepts and msgspec's
  strict one does not (``3.0`` for an int, ``"3"`` for a number, epoch numbers for timestamps)
  is accepted as well, as the same Struct. The two decoders therefore accept the same messages
  and reject the rest identically (``tests/unit/stream_features/test_wire_decode.py`` checks it
  on generated inputs); the price is that a rejected message costs msgspec's attempt plus
  pydantic's.
"""

from __future__ import annotations

import re
from datetime import datetime
from operator import attrgetter
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, cast, get_args, get_origin

import annotated_types
import msgspec
from msgspec.structs import force_setattr
from pydantic import AwareDatetime, BaseModel, BeforeValidator, WithJsonSchema
from pydantic.fields import FieldInfo

from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    _as_utc_or_none,
    as_utc,
    check_size,
    decode,
    id_text,
)

__all__ = [
    "WIRE_TYPES",
    "AnyEvent",
    "AnyOrder",
    "DasherEventWire",
    "MarketSupplySnapshotWire",
    "OrderCreatedWire",
    "OrderDeliveredWire",
    "WireEvent",
    "decode_fast",
    "to_wire",
]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Immutable like the pydantic models; no reference cycles, so no GC tracking."""


class OrderCreatedWire(_Wire, frozen=True, kw_only=True):
    """``contract.OrderCreated`` as ``decode_fast`` returns it."""

    type: ClassVar[Literal["OrderCreated"]] = "OrderCreated"
    schema_version: Literal[1] = 1
    order_id: str
    created_at: datetime
    market_id: str
    store_id: str
    total_items: int
    subtotal: int
    num_distinct_items: int
    store_category: str | None = None
    order_protocol: int | None = None
    min_item_price: int | None = None
    max_item_price: int | None = None
    estimated_order_place_duration_s: int | None = None
    estimated_store_to_consumer_driving_duration_s: int | None = None
    store_lat: float | None = None
    store_lon: float | None = None
    consumer_lat: float | None = None
    consumer_lon: float | None = None


class DasherEventWire(_Wire, frozen=True, kw_only=True):
    """``contract.DasherEvent`` as ``decode_fast`` returns it."""

    type: ClassVar[Literal["DasherEvent"]] = "DasherEvent"
    schema_version: Literal[1] = 1
    dasher_id: str
    market_id: str
    kind: Literal["shift_start", "shift_end", "assigned", "freed"]
    at: datetime


class MarketSupplySnapshotWire(_Wire, frozen=True, kw_only=True):
    """``contract.MarketSupplySnapshot`` as ``decode_fast`` returns it."""

    type: ClassVar[Literal["MarketSupplySnapshot"]] = "MarketSupplySnapshot"
    schema_version: Literal[1] = 1
    market_id: str
    at: datetime
    onshift_dashers: int
    busy_dashers: int
    outstanding_orders: int


class OrderDeliveredWire(_Wire, frozen=True, kw_only=True):
    """``contract.OrderDelivered`` as ``decode_fast`` returns it."""

    type: ClassVar[Literal["OrderDelivered"]] = "OrderDelivered"
    schema_version: Literal[1] = 1
    order_id: str
    store_id: str
    market_id: str
    delivered_at: datetime
    picked_up_at: datetime | None = None


WireEvent = OrderCreatedWire | DasherEventWire | MarketSupplySnapshotWire | OrderDeliveredWire
AnyEvent = Event | WireEvent
"""An event from either decoder: what the stream path's functions accept."""
AnyOrder = OrderCreated | OrderCreatedWire

_TYPED: dict[type[BaseModel], type[_Wire]] = {
    OrderCreated: OrderCreatedWire,
    DasherEvent: DasherEventWire,
    MarketSupplySnapshot: MarketSupplySnapshotWire,
    OrderDelivered: OrderDeliveredWire,
}

# --- timestamps ---------------------------------------------------------------------------
_AWARE = Annotated[datetime, msgspec.Meta(tz=True)]
_REQUIRED_TIME: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_AWARE)
_OPTIONAL_TIME: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_AWARE | None)
_TEXT = msgspec.json.Decoder(str)
_SHORT = len(b'"2026-03-01T12:00:00.123456Z"')
"""A quoted stamp no longer than this cannot hold a seventh digit of a second, even escaped."""


def _past_micros(quoted: bytes) -> bool:
    """Whether a quoted JSON stamp longer than ``_SHORT`` may hold digits past microseconds:
    a digit 7 places after the seconds' dot, or an escape that could hide one. Never false
    when there are such digits; true for some stamps without (they only take the slower path).

    >>> _past_micros(b'"2026-03-01T12:00:00.123456+00:00"')
    False
    >>> _past_micros(b'"2026-03-01T12:00:00.1234567+00:00"')
    True
    """
    return (quoted[20] == 46 and 48 <= quoted[27] <= 57) or 92 in quoted  # ".", a digit; "\\"


def _truncated(text: str) -> str:
    """A stamp with its fraction of a second cut to microseconds, as pydantic reads it
    (msgspec would round, moving some stamps by a microsecond).

    >>> _truncated("2026-03-01T12:00:00.123456789Z")
    '2026-03-01T12:00:00.123456Z'
    >>> _truncated("2026-03-01T12:00:00.5+01:00")
    '2026-03-01T12:00:00.5+01:00'
    """
    fraction = text[20:27]
    if text[19:20] != "." or not (len(fraction) == 7 and fraction.isascii() and fraction.isdigit()):
        return text
    end = 27
    while end < len(text) and text[end] in "0123456789":
        end += 1
    return text[:26] + text[end:]


def _wire_time(value: Any, decoder: msgspec.json.Decoder[Any]) -> datetime | None:
    """A timestamp field's raw JSON (or a datetime, when built by ``to_wire``) as the contract
    reads it: aware, in UTC, within 2000..2100. msgspec parses it (RFC 3339, stricter than
    pydantic: what it refuses goes to pydantic), after cutting digits past microseconds."""
    if type(value) is msgspec.Raw:
        if len(value) > _SHORT and _past_micros(bytes(value)):
            value = _REQUIRED_TIME.decode(msgspec.json.encode(_truncated(_TEXT.decode(value))))
        else:
            value = decoder.decode(value)
    return None if value is None else as_utc(value)


# --- deriving the Struct types from the pydantic models -----------------------------------
_CHARSET = re.compile(r"\^\[((?:[^\\\]]|\\[-\\\].^])+)\]\+\$")
"""A pattern ``^[...]+$`` whose class holds only literal characters and ranges."""


def _charset(pattern: str) -> str:
    """The characters ``pattern`` (``^[class]+$``) allows, checked in ``__post_init__`` with one
    ``str.strip`` for all such fields: msgspec's own pattern check costs 0.4 µs a field, and
    Python's ``$`` (unlike pydantic's Rust regex) would let a final newline through.

    >>> _charset(r"^[a-c_\\-]+$")
    '-_abc'
    """
    found = _CHARSET.fullmatch(pattern)
    if found is None or not found.group(1).isascii():
        raise TypeError(f"pattern {pattern!r} is not ^[ASCII class]+$: teach wire_decode it")
    member = re.compile(f"[{found.group(1)}]")
    return "".join(c for c in map(chr, range(128)) if member.fullmatch(c))


_BOUNDS = {
    annotated_types.Ge: "ge",
    annotated_types.Le: "le",
    annotated_types.Gt: "gt",
    annotated_types.Lt: "lt",
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
}


def _constraints(metadata: list[Any]) -> tuple[dict[str, Any], str | None, bool, bool]:
    """msgspec ``Meta`` arguments, the charset of a pattern, whether inf/NaN are refused, and
    whether a JSON integer is read as its decimal string (the contract's ``Id``)."""
    meta: dict[str, Any] = {}
    charset, finite, integers = None, False, False
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[float, Field(...)] inside a union
            more, charset, finite, integers = _constraints(item.metadata)
            meta.update(more)
        elif isinstance(item, BeforeValidator) and item.func is id_text:
            integers = True  # mirrored in __post_init__ (_id_texts)
        elif isinstance(item, WithJsonSchema):  # what the schema says, not a rule
            continue
        elif type(item) in _BOUNDS:
            key = _BOUNDS[type(item)]
            meta[key] = getattr(item, key)
        elif type(item).__name__ == "_PydanticGeneralMetadata":
            general = dict(vars(item))
            pattern = general.pop("pattern", None)
            if pattern is not None:
                charset = _charset(pattern)
                meta["min_length"] = max(meta.get("min_length", 1), 1)  # "+": one at least
            finite = general.pop("allow_inf_nan", True) is False
            if general:
                raise TypeError(f"constraints {general} have no msgspec rule: teach wire_decode")
        else:
            raise TypeError(f"constraint {item!r} has no msgspec rule: teach wire_decode")
    return meta, charset, finite, integers


class _Field:
    """What the derivation learnt of one field: its msgspec type, its pattern's charset, for a
    timestamp whether it may be null, and whether a JSON integer stands for its string."""

    def __init__(
        self,
        wire: Any,
        charset: str | None = None,
        time: bool | None = None,
        integers: bool = False,
        max_length: int = 0,
    ) -> None:
        self.wire, self.charset, self.time, self.integers = wire, charset, time, integers
        self.max_length = max_length


def _wire_type(annotation: Any, metadata: list[Any]) -> _Field:
    """The msgspec reading of a pydantic field; timestamps are read as raw JSON and parsed
    in ``_wire_time``, ids that may be JSON integers are made strings in ``_id_texts``."""
    if annotation is AwareDatetime:
        return _Field(msgspec.Raw, time=False)
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) != 1 or len(get_args(annotation)) != 2:
            raise TypeError(f"{annotation} is not X | None: teach wire_decode")
        inner = _wire_type(members[0], metadata)
        if inner.integers:
            raise TypeError(f"{annotation}: an optional integer-or-string id: teach wire_decode")
        if inner.time is not None:
            return _Field(inner.wire, inner.charset, True)
        return _Field(inner.wire | None, inner.charset)
    if origin is Annotated:
        base, *more = get_args(annotation)
        return _wire_type(base, [*metadata, *more])
    if origin is Literal:
        if metadata:
            raise TypeError(f"{annotation} with {metadata}: teach wire_decode")
        return _Field(annotation)
    if annotation not in (int, float, str):
        raise TypeError(f"field type {annotation!r} has no msgspec rule: teach wire_decode")
    meta, charset, finite, integers = _constraints(metadata)
    bounded = {"ge", "gt"} & meta.keys() and {"le", "lt"} & meta.keys()
    if annotation is float and finite and not bounded:  # msgspec reads 1e999 as inf
        raise TypeError("a float refusing inf/NaN needs both bounds here: teach wire_decode")
    if integers and (annotation is not str or charset is None or "max_length" not in meta):
        raise TypeError("an integer-or-string id needs a patterned, capped str: teach wire_decode")
    wire = Annotated[annotation, msgspec.Meta(**meta)] if meta else annotation
    if integers:
        return _Field(wire | int, charset, None, True, meta["max_length"])
    return _Field(wire, charset)


def _check_validators(model: type[BaseModel], times: set[str]) -> None:
    """Make sure ``model``'s validators are the ones this module mirrors: none across fields
    (those are findings, ``stream_features.quality``), the UTC check on exactly its timestamps."""
    decorators = model.__pydantic_decorators__
    runners = {d.func for d in decorators.model_validators.values()}
    if runners:
        raise TypeError(f"{model.__name__}'s model validators {runners}: teach wire_decode")
    normalised: set[str] = set()
    for validator in decorators.field_validators.values():
        if validator.func not in (as_utc, _as_utc_or_none):
            raise TypeError(f"{model.__name__} validator {validator.func}: teach wire_decode")
        normalised.update(validator.info.fields)
    if normalised != times:
        raise TypeError(f"{model.__name__}: as_utc on {normalised}, timestamps are {times}")


_JSON_INTS = (-(2**63), 2**64 - 1)
"""The integers orjson (``contract.decode``) reads as ints; others become floats there."""


def _id_texts(struct: _Wire, names: tuple[str, ...], max_lengths: dict[str, int]) -> str:
    """Set each id among ``names`` that came as a JSON integer to its decimal string (as the
    contract's ``id_text``) and return the ids joined, for the charset check. Only reached when
    an id was an integer: the join of strings, the usual case, did not raise."""
    texts = []
    for name in names:
        value = getattr(struct, name)
        if type(value) is int:
            if not _JSON_INTS[0] <= value <= _JSON_INTS[1]:  # orjson reads it as a float
                raise ValueError(f"{name}: an integer outside orjson's range")
            value = id_text(value)
            if len(value) > max_lengths[name]:  # pydantic's reason for it: see decode_fast
                raise ValueError(f"{name} is over {max_lengths[name]} characters")
            force_setattr(struct, name, value)
        texts.append(value)
    return "".join(texts)


_SUPPORTED_CONFIG = {"extra": "forbid", "frozen": True, "str_strip_whitespace": False}


def _derive(model: type[BaseModel]) -> type[_Wire]:
    """The Struct ``decode_fast`` reads ``model``'s messages into, a subclass of its typed class."""
    config = {k: v for k, v in model.model_config.items() if k != "title"}
    if config != _SUPPORTED_CONFIG:
        raise TypeError(f"{model.__name__} config {config} differs from what wire_decode reads")
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    times: list[tuple[str, msgspec.json.Decoder[Any]]] = []
    charsets: dict[str, list[str]] = {}
    max_lengths: dict[str, int] = {}
    for name, info in model.model_fields.items():
        if name == "type":  # the tag: msgspec checks it, the typed class carries it
            continue
        field = _wire_type(info.annotation, list(info.metadata))
        if field.time is not None:
            times.append((name, _OPTIONAL_TIME if field.time else _REQUIRED_TIME))
        if field.charset is not None:
            charsets.setdefault(field.charset, []).append(name)
        if field.integers:
            max_lengths[name] = field.max_length
        fields.append(
            (name, field.wire) if info.is_required() else (name, field.wire, info.default)
        )
    _check_validators(model, {name for name, _ in times})
    checks = [(chars, attrgetter(*names), tuple(names)) for chars, names in charsets.items()]

    def __post_init__(self: _Wire) -> None:
        for name, decoder in times:
            force_setattr(self, name, _wire_time(getattr(self, name), decoder))
        for chars, values, names in checks:
            try:
                text = "".join(values(self))
            except TypeError:  # an id came as a JSON integer: the usual case pays nothing
                text = _id_texts(self, names, max_lengths)
            if text.strip(chars):  # one character outside the class
                raise ValueError(f"{', '.join(names)} must match the contract's pattern")

    typed = _TYPED[model]
    return cast(
        "type[_Wire]",
        msgspec.defstruct(
            typed.__name__,
            fields,
            bases=(typed,),
            module=__name__,
            namespace={"__post_init__": __post_init__, "__doc__": typed.__doc__},
            tag_field="type",
            tag=model.__name__,
            forbid_unknown_fields=True,
            frozen=True,
            kw_only=True,
            gc=False,
        ),
    )


WIRE_TYPES: dict[str, type[_Wire]] = {model.__name__: _derive(model) for model in _TYPED}
"""The decoded Struct type of each stream event, by ``type``."""
_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[tuple(WIRE_TYPES.values())])  # noqa: UP007 - a runtime tuple of types
_ESCAPES: tuple[type[BaseException], ...] = (msgspec.MsgspecError, ValueError, RecursionError)
"""msgspec's refusals, and a str input holding a lone surrogate (UnicodeEncodeError)."""


def _utf8(raw: bytes | bytearray | memoryview | str) -> bool:
    """Whether ``raw`` is valid UTF-8 throughout, which msgspec does not check everywhere.

    A timestamp is read as ``msgspec.Raw`` and a duplicated key keeps only its last value, so
    invalid bytes in an earlier copy would never be looked at; orjson refuses the whole
    message. ASCII, the common case, is one fast scan.
    """
    if isinstance(raw, str):
        return True
    data = raw.tobytes() if isinstance(raw, memoryview) else raw
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def to_wire(event: Event) -> WireEvent:
    """A pydantic event as the Struct ``decode_fast`` would have returned for its JSON.

    >>> to_wire(decode(b'{"type":"DasherEvent","dasher_id":"d1","market_id":"m1",'
    ...                b'"kind":"assigned","at":"2026-01-01T12:00:00Z"}')).kind
    'assigned'
    """
    values = {name: getattr(event, name) for name in type(event).model_fields if name != "type"}
    return cast("WireEvent", WIRE_TYPES[event.type](**values))


def decode_fast(raw: bytes | bytearray | memoryview | str, max_bytes: int = 1_000_000) -> WireEvent:
    """Bytes to a validated stream event as a Struct, or ``RejectedMessage`` exactly as
    ``contract.decode`` raises it (only stream events: a DeliveryPrediction is rejected).

    >>> event = decode_fast(b'{"type":"DasherEvent","dasher_id":"d1","market_id":"m1",'
    ...                     b'"kind":"assigned","at":"2026-01-01T14:00:00+02:00"}')
    >>> event.type, event.kind, event.at.isoformat()
    ('DasherEvent', 'assigned', '2026-01-01T12:00:00+00:00')
    >>> decode_fast(b'{"type":"DasherEvent","at":"2026-01-01T12:00:00Z"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_features.errors.RejectedMessage: dasher_id: Field required (and 2 more)
    """
    check_size(raw, max_bytes)
    if _utf8(raw):
        try:
            return cast("WireEvent", _DECODER.decode(raw))
        except _ESCAPES:
            pass
    return to_wire(decode(raw, max_bytes))  # pydantic's reason, or its laxer reading accepted
