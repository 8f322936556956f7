"""Property tests: whatever bytes arrive on a topic, every decoder returns or rejects cleanly.

Three generators, from blind to informed: any bytes; any JSON document (built as text, so it
may hold NaN, 400-digit integers and duplicate keys, which no encoder would write); and a valid
message of each kind with one field replaced, dropped or added. ``oracle.check`` holds the
invariants; any other exception escaping a decoder fails the test.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz.oracle import check, check_decode
from tests.fuzz.samples import NASTY, VALID

# Generous per-example bound: a decoder that hangs fails; CPU shared with other runs does not.
# The examples themselves take microseconds.
_PROFILE = settings(
    max_examples=300,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_MESSAGES = [m for messages in VALID.values() for m in messages]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.sampled_from(["2026-03-01T12:00:00Z", "2026-03-01T12:00:00", "9999-12-31T23:59:59-14:00"])
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=30,
)


def _as_json(value: Any) -> bytes:
    """The stdlib writes what orjson would refuse: NaN, Infinity, integers of any size."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@_PROFILE
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\xff\xfe\xfd")
@example(b"[" * 5000)
def test_any_bytes_decode_or_are_rejected_with_a_reason(data: bytes) -> None:
    check(data)


@_PROFILE
@given(_json_values)
def test_any_json_decodes_or_is_rejected_with_a_reason(value: Any) -> None:
    check(_as_json(value))


@_PROFILE
@given(
    message=st.sampled_from(_MESSAGES),
    field=st.sampled_from(sorted({k for m in _MESSAGES for k in m} | {"extra", "schema_version"})),
    value=_json_values,
    action=st.sampled_from(["replace", "drop"]),
)
def test_a_valid_message_with_one_field_changed_decodes_or_names_a_reason(
    message: dict[str, Any], field: str, value: Any, action: str
) -> None:
    data = {k: v for k, v in message.items() if not (action == "drop" and k == field)}
    if action == "replace":
        data[field] = value
    check(_as_json(data))


@_PROFILE
@given(message=st.sampled_from(_MESSAGES), cut=st.integers(min_value=0, max_value=2000))
def test_a_message_cut_anywhere_is_rejected_not_raised(message: dict[str, Any], cut: int) -> None:
    raw = orjson.dumps(message)
    check(raw[: cut % max(len(raw), 1)])


@_PROFILE
@given(message=st.sampled_from(_MESSAGES), junk=st.binary(min_size=1, max_size=16))
def test_bytes_spliced_into_a_message_are_rejected_or_decode(
    message: dict[str, Any], junk: bytes
) -> None:
    raw = orjson.dumps(message)
    check(raw[: len(raw) // 2] + junk + raw[len(raw) // 2 :])


@pytest.mark.parametrize("name", sorted(NASTY))
def test_every_nasty_seed_passes_the_oracle(name: str) -> None:
    check(NASTY[name])


@pytest.mark.parametrize("topic", sorted(VALID))
def test_the_valid_seeds_of_event_topics_decode(topic: str) -> None:
    for message in VALID[topic]:
        event = check_decode(orjson.dumps(message))
        assert (event is not None) == (message["type"] not in {"DeliveryPrediction", "DeadLetter"})
