"""The hot-path prediction encoder writes exactly what the contract's ``encode`` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from predictor.serving.encoding import encode_prediction
from stream_features.contract import DeliveryPrediction, Explanation, encode
from stream_features.wire_decode import AnyOrder, to_wire
from tests.serving_fakes import T0, order

durations = st.floats(min_value=0, max_value=365 * 86400, allow_nan=False)
freshness = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)
features = st.none() | st.dictionaries(
    st.sampled_from(["a__b__10m", "c__d", "order__subtotal"]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
below_above = st.none() | st.tuples(
    st.floats(min_value=0, max_value=1, allow_nan=False),
    st.floats(min_value=0, max_value=86400, allow_nan=False),
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
explanations = st.none() | st.builds(
    lambda bias, contributions, top: {"bias_s": bias, "contributions_s": contributions, "top": top},
    finite,
    st.dictionaries(st.sampled_from(["a__b__10m", "c__d"]), finite),
    st.lists(st.text(max_size=40), max_size=5),
)  # keys in Explanation's declaration order, as ``serving.explain`` builds them


@given(
    duration=durations,
    fresh=freshness,
    feats=features,
    created_us=st.integers(0, 10**12),
    served_us=st.integers(0, 10**12),
    spread=below_above,
    reasons=explanations,
)
def test_fast_encoding_equals_the_contract_encoding(
    duration: float,
    fresh: float | None,
    feats: dict[str, float] | None,
    created_us: int,
    served_us: int,
    spread: tuple[float, float] | None,
    reasons: dict[str, Any] | None,
) -> None:
    o = order(1, at=T0 + timedelta(microseconds=created_us))
    served_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=served_us)
    low = None if spread is None else duration * spread[0]
    high = None if spread is None else duration + spread[1]
    fast = encode_prediction(
        o,
        duration,
        model_name="eta",
        model_version="12",
        served_at=served_at,
        feature_freshness_s=fresh,
        features=feats,
        p10_s=low,
        p90_s=high,
        explanation=reasons,
    )
    slow = encode(
        DeliveryPrediction(
            order_id=o.order_id,
            store_id=o.store_id,
            market_id=o.market_id,
            created_at=o.created_at,
            predicted_duration_s=duration,
            predicted_delivery_at=o.created_at + timedelta(seconds=duration),
            model_name="eta",
            model_version="12",
            mode="streaming",
            served_at=served_at,
            feature_freshness_s=fresh,
            features=feats,
            predicted_duration_p10_s=low,
            predicted_duration_p90_s=high,
            explanation=None if reasons is None else Explanation(**reasons),
        )
    )
    assert fast == slow
    decoded = DeliveryPrediction.model_validate_json(fast)
    assert decoded.predicted_duration_s == duration
    assert (decoded.predicted_duration_p10_s, decoded.predicted_duration_p90_s) == (low, high)


def test_a_range_that_excludes_the_eta_breaks_the_contract() -> None:
    o = order(1)
    fields = {
        "order_id": o.order_id,
        "store_id": o.store_id,
        "market_id": o.market_id,
        "created_at": o.created_at,
        "predicted_duration_s": 900.0,
        "predicted_delivery_at": o.created_at + timedelta(seconds=900),
        "model_name": "eta",
        "model_version": "1",
        "mode": "online",
        "served_at": o.created_at,
    }
    DeliveryPrediction(**fields)  # no range: an older producer, or a model without one
    ok = DeliveryPrediction(**fields, predicted_duration_p10_s=600, predicted_duration_p90_s=900)
    assert ok.predicted_duration_p90_s == 900
    with pytest.raises(ValidationError, match="does not hold predicted_duration_s"):
        DeliveryPrediction(**fields, predicted_duration_p10_s=950, predicted_duration_p90_s=1200)
    with pytest.raises(ValidationError, match="together or not at all"):
        DeliveryPrediction(**fields, predicted_duration_p10_s=600)


@given(duration=durations, created_us=st.integers(0, 10**12))
def test_a_struct_order_encodes_as_its_pydantic_twin(duration: float, created_us: int) -> None:
    o = order(1, at=T0 + timedelta(microseconds=created_us), store_lat=37.5)
    served_at = datetime(2026, 1, 1, tzinfo=UTC)

    def encoded(event: AnyOrder) -> bytes:
        return encode_prediction(
            event,
            duration,
            model_name="eta",
            model_version="12",
            served_at=served_at,
            feature_freshness_s=None,
        )

    assert encoded(to_wire(o)) == encoded(o)  # type: ignore[arg-type]  # to_wire of an order
