"""The worker's fast decoder against the contract's: same answers, same types, one set of rules.

Property tests feed both decoders valid events of every kind mutated the ways senders get them
wrong (wrong types, values just outside each bound, missing, extra and repeated fields,
booleans, nulls, timestamps of every shape, a wrong tag or schema_version, other JSON than an
object, bytes that are not UTF-8 or JSON) and ``oracle.check_same`` holds the answers equal:
the same fields with values of the same Python types, or the same rejection reason and field.
The drift tests hold the typed Struct classes to the pydantic models.
"""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stream_features import wire_decode
from stream_features.contract import (
    DasherEvent,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    decode,
    event_id,
    event_time,
    to_ms,
)
from stream_features.errors import RejectedMessage
from stream_features.quality import OPTIONAL_ORDER_FIELDS, findings
from stream_features.wire_decode import (
    WIRE_TYPES,
    DasherEventWire,
    OrderCreatedWire,
    decode_fast,
    to_wire,
)
from tests.fuzz.oracle import check_same
from tests.fuzz.samples import NASTY, VALID

MODELS: list[type[BaseModel]] = [OrderCreated, DasherEvent, MarketSupplySnapshot, OrderDelivered]
EVENTS = [m for topic in ("orders", "dasher-events", "deliveries") for m in VALID[topic]]
PROFILE = settings(
    max_examples=400,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _as_json(value: Any) -> bytes:
    """The stdlib writes what orjson refuses (NaN, huge integers) and keeps key order."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


# --- strategies ------------------------------------------------------------------------------
_BOUNDS = [0, 1, 100, 10_000, 100_000_000, 604_800, 1_000_000, 90, 180]
ints = st.sampled_from([b + d for b in _BOUNDS for d in (-1, 0, 1)] + [-(b + 1) for b in _BOUNDS])
numbers = (
    ints
    | st.integers()
    | st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([3.0, 3.5, -0.0, 90.0, 90.000001, -180.0, -180.1, 1e8, 1e308, 5e-324])
)
fractions = st.text("0123456789", min_size=1, max_size=14).map(lambda d: "." + d)
stamps = st.builds(
    lambda date, sep, clock, fraction, zone: f"{date}{sep}{clock}{fraction}{zone}",
    st.sampled_from(["2026-03-01", "2000-01-01", "1999-12-31", "2099-12-31", "2100-01-01"])
    | st.sampled_from(["0001-01-01", "9999-12-31", "2026-02-29", "2024-02-29", "2026-13-01"])
    | st.sampled_from(["2026-3-1", "20260301"]),
    st.sampled_from(["T", "t", " ", "_", ""]),
    st.sampled_from(["12:00:00", "23:59:59", "00:00:00", "23:59:60", "24:00:00", "12:00", "12"]),
    st.sampled_from(["", ".", ",5"]) | fractions,
    st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+01:30", "+0130", "+01", "-14:00"])
    | st.sampled_from(["+14:00", "+23:59", "-23:59", "+24:00", " Z", "ZZ", "+01:00:30", "UTC"]),
)
times = (
    stamps
    | st.integers(-(10**13), 10**13)
    | st.sampled_from([946_684_800, 4_102_444_799, 4_102_444_800, 1_772_366_400_000, 1.5e9])
    | st.floats(allow_nan=False, allow_infinity=False)
)
texts = st.text(max_size=70) | st.sampled_from(
    ["", "s42", "s42\n", " s42", "s/42", "é", "a" * 64, "a" * 65, "o-1:x_y.z", "\x00", "\U0001f355"]
)
scalars = st.none() | st.booleans() | numbers | texts | times
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner), max_leaves=6
)
_FIELDS = sorted({name for model in MODELS for name in model.model_fields})
field_names = st.sampled_from([*_FIELDS, "extra", "", "Type", "type ", "schema_version"])


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one to three fields replaced, dropped or added."""
    data = dict(draw(st.sampled_from(EVENTS)))
    for _ in range(draw(st.integers(1, 3))):
        name = draw(field_names)
        action = draw(st.sampled_from(["replace", "replace", "drop"]))
        if action == "drop":
            data.pop(name, None)
        elif name.endswith("_at") or name == "at":
            data[name] = draw(times | scalars)
        elif name in ("type", "kind", "schema_version"):
            tags = [*WIRE_TYPES, "DeliveryPrediction", "DeadLetter", "shift_start", "freed"]
            data[name] = draw(st.sampled_from([*tags, 1, 2, 1.0, "1", True, None]) | values)
        else:
            data[name] = draw(numbers | values)
    return data


# --- the two decoders agree -------------------------------------------------------------------
@PROFILE
@given(mutated())
@example(dict(VALID["orders"][0], min_item_price=1501))
@example(dict(VALID["orders"][0], num_distinct_items=4))
@example(dict(VALID["dasher-events"][1], busy_dashers=41))
@example(dict(VALID["orders"][0], created_at="2026-03-01T12:00:00.9999995Z"))
@example(dict(VALID["orders"][0], order_id="o-1\n"))
@example(dict(VALID["deliveries"][0], picked_up_at=None))
@example(dict(VALID["orders"][0], store_id=-(2**63) - 1))
@example(dict(VALID["orders"][0], market_id=42, store_category=None))
def test_a_mutated_event_gets_the_same_answer_from_both(data: dict[str, Any]) -> None:
    check_same(_as_json(data))


@PROFILE
@given(message=st.sampled_from(EVENTS), stamp=times)
def test_every_timestamp_shape_gets_the_same_answer(message: dict[str, Any], stamp: Any) -> None:
    for name in ("created_at", "at", "delivered_at", "picked_up_at"):
        if name in message:
            check_same(_as_json({**message, name: stamp}))


@PROFILE
@given(stamp=stamps, digits=st.text("0123456789", min_size=7, max_size=30))
def test_digits_past_microseconds_are_cut_as_pydantic_cuts_them(stamp: str, digits: str) -> None:
    head = "2026-03-01T12:00:00"
    for text in (f"{head}.{digits}Z", f"{head}.{digits}+01:00", stamp):
        for order in (VALID["orders"][0], VALID["dasher-events"][0]):
            key = "created_at" if "created_at" in order else "at"
            check_same(orjson.dumps({**order, key: text}))


@PROFILE
@given(st.binary(max_size=600))
@example(b'{"type":"OrderCreated"}')
@example(b"\xef\xbb\xbf{}")
def test_any_bytes_get_the_same_answer(data: bytes) -> None:
    check_same(data)


@PROFILE
@given(message=st.sampled_from(EVENTS), cut=st.integers(0, 600), junk=st.binary(max_size=8))
def test_cut_and_spliced_events_get_the_same_answer(
    message: dict[str, Any], cut: int, junk: bytes
) -> None:
    raw = orjson.dumps(message)
    at = cut % (len(raw) + 1)
    check_same(raw[:at])
    check_same(raw[:at] + junk + raw[at:])


@PROFILE
@given(mutated(), st.sampled_from(["str", "bytearray", "memoryview"]))
def test_str_and_buffer_inputs_get_the_same_answer(data: dict[str, Any], kind: str) -> None:
    raw = _as_json(data)
    text = raw.decode("utf-8", "surrogatepass")  # may hold lone surrogates
    given_as = {"str": text, "bytearray": bytearray(raw), "memoryview": memoryview(raw)}
    check_same(given_as[kind])


@pytest.mark.parametrize("name", ["created_at", "order_id"])
@pytest.mark.parametrize("bad", [b"\xd3\xcf", b"\xed\xa0\x80", b"\xff"])
def test_invalid_utf8_in_a_duplicated_key_is_rejected_alike(name: str, bad: bytes) -> None:
    """A key given twice keeps its last value in both decoders; bytes that are not UTF-8 in the
    first copy (a timestamp is read raw, so msgspec never looked at it) still reject it."""
    order = VALID["orders"][0]
    raw = orjson.dumps(order)
    dup = b'{"' + name.encode() + b'":"2026' + bad + b'",' + raw[1:]
    assert check_same(dup) == "rejected"
    assert check_same(bytearray(dup)) == check_same(memoryview(dup)) == "rejected"


@pytest.mark.parametrize("name", sorted(NASTY))
def test_every_nasty_input_gets_the_same_answer(name: str) -> None:
    check_same(NASTY[name])


@pytest.mark.parametrize("limit", [10, 250, 400, 1_000_000])
def test_the_size_limit_is_the_same(limit: int) -> None:
    for message in EVENTS:
        check_same(orjson.dumps(message), limit)
        check_same(orjson.dumps(message).decode(), limit)


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"null", b"1", b'"OrderCreated"', b"", b"{", b"\xff", b"{}", b'{"type":null}'],
)
def test_other_json_and_broken_bytes_are_rejected_alike(raw: bytes) -> None:
    assert check_same(raw) == "rejected"


# --- the fast path is the one taken --------------------------------------------------------
def test_valid_events_are_read_without_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only rejections (and pydantic's laxer readings) go to ``contract.decode``."""

    def refuse(*_: object) -> None:
        raise AssertionError("decode_fast fell back to pydantic")

    monkeypatch.setattr(wire_decode, "decode", refuse)
    order = VALID["orders"][0]
    shapes = [
        "2026-03-01T12:00:00.123456Z",
        "2026-03-01T14:00:00.5+02:00",
        "2026-03-01T12:00:00.123456+00:00",
        "2026-03-01T12:00:00.123456789Z",
        "2026-03-01 12:00:00z",
    ]
    events = [decode_fast(orjson.dumps(m)) for m in EVENTS]
    events += [decode_fast(orjson.dumps({**order, "created_at": s})) for s in shapes]
    partial = {k: v for k, v in order.items() if not k.endswith(("_lat", "_lon"))}
    events.append(decode_fast(orjson.dumps({**partial, "store_lat": None})))
    assert [e.type for e in events[:4]] == [m["type"] for m in EVENTS]


def test_a_laxer_pydantic_reading_is_accepted_as_the_same_struct() -> None:
    order = VALID["orders"][0]
    lax = decode_fast(orjson.dumps({**order, "total_items": 3.0, "created_at": 1_772_366_400}))
    assert isinstance(lax, OrderCreatedWire) and type(lax) is WIRE_TYPES["OrderCreated"]
    assert lax.total_items == 3 and type(lax.total_items) is int
    assert lax.created_at == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_rejections_carry_pydantic_reasons_word_for_word() -> None:
    order = VALID["orders"][0]
    with pytest.raises(RejectedMessage) as caught:
        decode_fast(orjson.dumps({**order, "min_item_price": 2000, "subtotal": -1}))
    assert (caught.value.field, caught.value.reason) == (
        "subtotal",
        "Input should be greater than or equal to 0",
    )


# --- what the Structs are --------------------------------------------------------------------
def test_structs_behave_like_the_models_where_the_stream_path_looks() -> None:
    order = decode_fast(orjson.dumps(VALID["orders"][0]))
    dasher = decode_fast(orjson.dumps(VALID["dasher-events"][0]))
    assert isinstance(order, OrderCreatedWire) and isinstance(dasher, DasherEventWire)
    assert order.type == "OrderCreated" and dasher.type == "DasherEvent"
    assert to_ms(event_time(order)) == to_ms(order.created_at) == 1_772_366_400_000
    assert event_id(dasher) == "DasherEvent:m1-d7:assigned:1772366401000"
    with pytest.raises(AttributeError):
        order.subtotal = 1  # type: ignore[misc]  # frozen, like the pydantic models
    assert hash(order) == hash(decode_fast(orjson.dumps(VALID["orders"][0])))


def test_to_wire_gives_what_decode_fast_gives() -> None:
    for message in EVENTS:
        raw = orjson.dumps(message)
        assert to_wire(decode(raw)) == decode_fast(raw)


def test_structs_built_by_hand_are_checked_too() -> None:
    struct = WIRE_TYPES["MarketSupplySnapshot"]
    with pytest.raises(ValueError, match="must match the contract's pattern"):
        struct(market_id="m 1", at=datetime(2026, 1, 1, tzinfo=UTC), onshift_dashers=1,
               busy_dashers=0, outstanding_orders=0)  # fmt: skip
    odd = struct(market_id=7, at=datetime(2026, 1, 1, tzinfo=UTC), onshift_dashers=1,
                 busy_dashers=2, outstanding_orders=0)  # fmt: skip
    assert odd.market_id == "7"  # type: ignore[attr-defined]  # struct() builds a type at run time: mypy cannot see its fields
    assert [f.rule for f in findings(odd)] == ["busy_above_onshift"]


# --- ids as integers, optional attributes, findings: the same on both paths --------------
_ORDER = VALID["orders"][0]
_SNAPSHOT = VALID["dasher-events"][1]


@pytest.mark.parametrize(
    "message",
    [
        {**_ORDER, "order_id": 7, "market_id": 1, "store_id": 7000},
        {**_ORDER, "store_id": 0},
        {**_ORDER, "store_id": -12},
        {**_ORDER, "store_id": 2**63 - 1},
        {**_ORDER, "store_id": 2**64 - 1},
        {**_ORDER, "store_id": 2**64},  # orjson reads a float: rejected alike
        {**_ORDER, "store_id": -(2**63) - 1},
        {**_ORDER, "store_id": 10**70},
        {**_ORDER, "store_id": 4.0},
        {**_ORDER, "store_id": 3, "market_id": "m 1"},  # an integer and a bad string
        {**_ORDER, "store_id": 3, "order_id": ""},
        {**VALID["dasher-events"][0], "dasher_id": 12, "market_id": 3},
        {**_SNAPSHOT, "market_id": 3},
        {**VALID["deliveries"][0], "order_id": 1, "store_id": 2, "market_id": 3},
    ],
)
def test_integer_ids_get_the_same_answer(message: dict[str, Any]) -> None:
    check_same(_as_json(message))


def test_integer_ids_are_read_without_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire_decode, "decode", lambda *_: pytest.fail("fell back to pydantic"))
    event = decode_fast(orjson.dumps({**_ORDER, "order_id": 7, "market_id": 1, "store_id": 70}))
    assert (event.order_id, event.market_id, event.store_id) == ("7", "1", "70")  # type: ignore[union-attr]  # decode_fast returns any event; this one is an order


@pytest.mark.parametrize("name", OPTIONAL_ORDER_FIELDS)
def test_a_missing_or_null_attribute_gets_the_same_answer(name: str) -> None:
    absent = {k: v for k, v in _ORDER.items() if k != name}
    assert check_same(_as_json(absent)) == "OrderCreated"
    assert check_same(_as_json({**_ORDER, name: None})) == "OrderCreated"
    event = decode_fast(_as_json(absent))
    assert getattr(event, name) is None


@pytest.mark.parametrize(
    "message",
    [
        {**_ORDER, "min_item_price": 1501},
        {**_ORDER, "num_distinct_items": 4},
        {**_ORDER, "max_item_price": 2501, "min_item_price": None},
        {**_ORDER, "estimated_order_place_duration_s": 0},
        {**_ORDER, "estimated_order_place_duration_s": 0, "store_category": None},
        {**_SNAPSHOT, "busy_dashers": 41},
        {**VALID["deliveries"][0], "picked_up_at": "2026-03-01T12:41:01Z"},
    ],
)
def test_findings_are_the_same_from_both(message: dict[str, Any]) -> None:
    assert check_same(_as_json(message)) != "rejected"
    assert findings(decode_fast(_as_json(message)))


# --- one contract: the Structs cannot drift from the models ---------------------------------
def _plain(annotation: Any) -> Any:
    """A pydantic field annotation without its constraints, as the typed classes spell it."""
    if annotation is AwareDatetime:
        return datetime
    if typing.get_origin(annotation) is typing.Annotated:
        return _plain(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        return typing.Union[tuple(_plain(a) for a in typing.get_args(annotation))]  # noqa: UP007
    return annotation


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_typed_classes_match_the_models(model: type[BaseModel]) -> None:
    typed = WIRE_TYPES[model.__name__].__mro__[1]
    hints = typing.get_type_hints(typed)
    assert hints.pop("type") == typing.ClassVar[model.model_fields["type"].annotation]
    assert typed.type == model.model_fields["type"].default  # type: ignore[attr-defined]  # typed is found through __mro__ at run time: a plain type to mypy
    assert hints == {n: _plain(f.annotation) for n, f in model.model_fields.items() if n != "type"}
    defaults = {f.name: f.default for f in msgspec.structs.fields(typed)}
    wanted = {n: f.default for n, f in model.model_fields.items() if n != "type"}
    assert defaults == {n: msgspec.NODEFAULT if d is ... or repr(d) == "PydanticUndefined" else d
                        for n, d in wanted.items()}  # fmt: skip


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    keys = {"minimum": "ge", "maximum": "le", "minLength": "min_length", "maxLength": "max_length"}
    for option in schema.get("anyOf", [schema]):
        if option.get("type") != "null":
            out = {keys[k]: v for k, v in option.items() if k in keys}
            if "enum" in option or "const" in option:
                out["literal"] = option.get("enum", [option.get("const")])
            return out
    return {}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_decoded_structs_carry_the_models_bounds(model: type[BaseModel]) -> None:
    """Checked against pydantic's JSON Schema (what ``eta schema`` publishes), not the
    derivation's own reading of the model."""
    schema = model.model_json_schema()["properties"]
    for field in msgspec.structs.fields(WIRE_TYPES[model.__name__]):
        info = msgspec.inspect.type_info(field.type)
        if isinstance(info, msgspec.inspect.UnionType):  # X | None, or an id's str | int
            types = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            if len(types) == 2:  # an id: its string's bounds (the integer has none)
                types = [t for t in types if isinstance(t, msgspec.inspect.StrType)]
            (info,) = types
        wanted = _bounds(schema[field.name])
        if isinstance(info, msgspec.inspect.LiteralType):
            assert sorted(info.values) == sorted(wanted.pop("literal"))
            continue
        if isinstance(info, msgspec.inspect.RawType):  # a timestamp, parsed in __post_init__
            assert schema[field.name].get("format") == "date-time" or any(
                o.get("format") == "date-time" for o in schema[field.name].get("anyOf", [])
            )
            continue
        got = {k: getattr(info, k, None) for k in ("ge", "le", "min_length", "max_length")}
        assert {k: v for k, v in got.items() if v is not None} == wanted, field.name
    assert {f.name for f in msgspec.structs.fields(WIRE_TYPES[model.__name__])} == set(
        model.model_fields
    ) - {"type"}


@pytest.mark.parametrize("message", EVENTS, ids=lambda m: m["type"])
def test_every_patterned_field_refuses_what_its_pattern_refuses(message: dict[str, Any]) -> None:
    model = next(m for m in MODELS if m.__name__ == message["type"])
    patterned = [
        n
        for n, p in model.model_json_schema()["properties"].items()
        if any("pattern" in option for option in p.get("anyOf", [p]))  # ids: str | int
    ]
    assert patterned
    for name in patterned:
        for bad in ("s42\n", "s 42", "s/42", "é", "\x00", "s42\r", "-._:"):
            check_same(orjson.dumps({**message, name: bad}))


def test_a_model_rule_the_derivation_cannot_mirror_fails_the_import() -> None:
    config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    class Odd(BaseModel):
        model_config = config
        n: int = Field(multiple_of=2)

    class Pattern(BaseModel):
        model_config = config
        s: str = Field(pattern=r"^\w+$")

    class Naive(BaseModel):
        model_config = config
        at: datetime

    class Lax(BaseModel):
        model_config = ConfigDict(extra="ignore", frozen=True)
        n: int

    for model in (Odd, Pattern, Naive, Lax):
        with pytest.raises(TypeError, match=r"teach wire_decode|differs"):
            wire_decode._derive(model)
