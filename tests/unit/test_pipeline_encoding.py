"""The hot-path prediction encoder writes exactly what the contract's ``encode`` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from predictor.serving.encoding import encode_prediction
from stream_features.contract import DeliveryPrediction, encode
from stream_features.wire_decode import AnyOrder, to_wire
from tests.serving_fakes import T0, order

durations = st.floats(min_value=0, max_value=365 * 86400, allow_nan=False)
freshness = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)
features = st.none() | st.dictionaries(
    st.sampled_from(["a__b__10m", "c__d", "order__subtotal"]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)


@given(
    duration=durations,
    fresh=freshness,
    feats=features,
    created_us=st.integers(0, 10**12),
    served_us=st.integers(0, 10**12),
)
def test_fast_encoding_equals_the_contract_encoding(
    duration: float,
    fresh: float | None,
    feats: dict[str, float] | None,
    created_us: int,
    served_us: int,
) -> None:
    o = order(1, at=T0 + timedelta(microseconds=created_us))
    served_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=served_us)
    fast = encode_prediction(
        o,
        duration,
        model_name="eta",
        model_version="12",
        served_at=served_at,
        feature_freshness_s=fresh,
        features=feats,
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
        )
    )
    assert fast == slow
    assert DeliveryPrediction.model_validate_json(fast).predicted_duration_s == duration


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
