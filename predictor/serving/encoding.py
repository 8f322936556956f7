"""Predictions to wire bytes, fast: the hot path skips pydantic but writes the same JSON; and
the one rule that turns a model's duration into a prediction (``answers``, a batch at a time),
which the stream, the HTTP API and the batch job all follow.

``encode(DeliveryPrediction(...))`` costs about 5 µs a record; a msgspec Struct with the model's
fields in declaration order costs under 1 µs, which matters at tens of thousands of
orders a second. A unit test holds the two byte-for-byte equal, so the contract stays the one
source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import msgspec
import numpy as np
import numpy.typing as npt

from stream_features.contract import SCHEMA_VERSION, STREAM_MODE, DeliveryPrediction
from stream_features.wire_decode import AnyOrder

__all__ = [
    "MAX_DURATION_S",
    "answer",
    "answers",
    "encode_prediction",
    "finite_features",
]

MAX_DURATION_S = 365 * 86400.0
"""Beyond a year a prediction is a model fault, not an ETA."""

_Prediction = msgspec.defstruct(
    "_Prediction",
    [(name, object, None) for name in DeliveryPrediction.model_fields],
    omit_defaults=True,
    gc=False,
)
"""``DeliveryPrediction``'s fields in its declaration order, a None one left out as
``contract.encode`` leaves it out: msgspec encodes a Struct faster than a dict, and the
fields come from the model, so the two cannot drift apart."""
_encode = msgspec.json.Encoder().encode


def finite_features(names: list[str], values: npt.NDArray[np.float64]) -> list[dict[str, float]]:
    """Per row of ``values``, the model inputs that have a value; a missing (NaN) input is left
    out of the dict.

    JSON has no NaN, and the contract's ``features`` holds floats only, so absence means
    "missing" (as NaN means to the model). Rows without a NaN (most of them) are zipped whole.

    >>> finite_features(["a", "b"], np.array([[1.0, float("nan")], [2.0, 3.0]]))
    [{'a': 1.0}, {'a': 2.0, 'b': 3.0}]
    """
    complete = cast("list[bool]", (~np.isnan(values).any(axis=1)).tolist())
    return [
        dict(zip(names, row, strict=True))
        if whole
        else {n: v for n, v in zip(names, row, strict=True) if v == v}  # NaN != NaN
        for row, whole in zip(values.tolist(), complete, strict=True)
    ]


def encode_prediction(
    order: AnyOrder,
    predicted_duration_s: float,
    *,
    model_name: str,
    model_version: str,
    served_at: datetime,
    feature_freshness_s: float | None,
    features: dict[str, float] | None = None,
    mode: str = STREAM_MODE,
    p10_s: float | None = None,
    p90_s: float | None = None,
    explanation: dict[str, Any] | None = None,
) -> bytes:
    """One ``DeliveryPrediction`` as wire JSON, for a duration already known to be usable
    (finite, >= 0) and a freshness already stated (None or >= 0): ``answers``' record. The
    range (``p10_s``, ``p90_s``: both or neither) must hold the duration. ``explanation`` is
    an ``Explanation``'s fields in declaration order (``predictor.serving.explain``)."""
    if not (math.isfinite(predicted_duration_s) and 0 <= predicted_duration_s <= MAX_DURATION_S):
        raise ValueError(f"not a usable duration: {predicted_duration_s!r}")
    encoded = answer(
        order,
        predicted_duration_s,
        math.nan if feature_freshness_s is None else feature_freshness_s,
        model_name=model_name,
        model_version=model_version,
        served_at=served_at,
        mode=mode,
        p10_s=p10_s,
        p90_s=p90_s,
        features=features,
        explanation=explanation,
    )
    assert encoded is not None  # checked above
    return encoded


def answer(
    order: AnyOrder,
    duration: float,
    age_s: float,
    *,
    model_name: str,
    model_version: str,
    served_at: datetime,
    mode: str,
    p10_s: float | None = None,
    p90_s: float | None = None,
    features: dict[str, float] | None = None,
    explanation: dict[str, Any] | None = None,
) -> bytes | None:
    """The prediction for ``order`` from the model's ``duration`` and the row's feature age,
    or None when it cannot be an ETA: ``answers`` for one order."""
    return answers(
        [order],
        [duration],
        [age_s],
        model_name=model_name,
        model_version=model_version,
        served_at=served_at,
        mode=mode,
        lows=[p10_s],
        highs=[p90_s],
        features=[features],
        explanations=[explanation],
    )[0]


def answers(
    orders: Sequence[AnyOrder],
    durations: Sequence[float],
    ages_s: Sequence[float],
    *,
    model_name: str,
    model_version: str,
    served_at: datetime,
    mode: str,
    lows: Sequence[float | None] | None = None,
    highs: Sequence[float | None] | None = None,
    features: Sequence[dict[str, float] | None] | None = None,
    explanations: Sequence[dict[str, Any] | None] | None = None,
) -> list[bytes | None]:
    """Each order's prediction from the model's duration and its row's feature age, or None
    where the duration cannot be an ETA: the one rule of every serving path (the stream, the
    HTTP API and the batch job), for a whole batch.

    - A duration that is not finite, or beyond ``MAX_DURATION_S``, is the model's fault: None,
      and the caller dead-letters, refuses or leaves out the order. A negative one is 0.
    - The freshness is the row's feature age, None without state yet (NaN), never negative.
    - The record is ``DeliveryPrediction``'s fields in declaration order (``_Prediction``).

    One loop, not a call per rule per order: at tens of thousands of orders a second, four
    Python calls an order cost more than the record's encoding.

    >>> from stream_features.contract import OrderCreated
    >>> order = OrderCreated(order_id="o1", created_at="2026-01-01T12:00:00Z", market_id="m1",
    ...                      store_id="s1", total_items=1, subtotal=100, num_distinct_items=1)
    >>> at = datetime.fromisoformat("2026-01-01T12:00:01+00:00")
    >>> out = answers([order] * 3, [-5.0, float("nan"), 60.0], [-0.2, 1.0, float("nan")],
    ...               model_name="eta", model_version="1", served_at=at, mode="online")
    >>> [None if v is None else msgspec.json.decode(v)["predicted_duration_s"] for v in out]
    [0.0, None, 60.0]
    >>> msgspec.json.decode(out[0])["feature_freshness_s"], "feature_freshness_s" in out[2].decode()
    (0.0, False)
    """
    none = [None] * len(orders)
    out: list[bytes | None] = []
    isfinite, seconds, build, encode = math.isfinite, timedelta, _Prediction, _encode
    for order, duration, age, low, high, included, reasons in zip(
        orders,
        durations,
        ages_s,
        none if lows is None else lows,
        none if highs is None else highs,
        none if features is None else features,
        none if explanations is None else explanations,
        strict=True,
    ):
        if not (isfinite(duration) and duration <= MAX_DURATION_S):
            out.append(None)
            continue
        duration = max(duration, 0.0)
        created = order.created_at
        out.append(
            encode(
                build(  # positional, in declaration order: a third faster than by keyword
                    SCHEMA_VERSION,
                    "DeliveryPrediction",
                    order.order_id,
                    order.store_id,
                    order.market_id,
                    created,
                    duration,
                    low,
                    None if low is None else high,
                    created + seconds(seconds=duration),
                    model_name,
                    model_version,
                    mode,
                    served_at,
                    None if age != age else max(age, 0.0),  # NaN != NaN
                    included,
                    reasons,
                )
            )
        )
    return out
