"""Online scoring: the orders' features read from the stream's state, one predict, the stream's
encoding with ``mode="online"``.

The same read the stream makes for an order (``get_online_features``: the state before the
order, without applying it), the same ``predict`` of the same model version, and the same
``answers``: a streamed and an online prediction for one order and one feature state
are equal byte for byte but for ``mode`` and ``served_at``.

With a ``shadow`` (``ETA_SHADOW_STAGE``: the worker's ``ShadowStage``), the rows and the answers
are handed to it once the answers are encoded: it only queues them for its own thread, so the
answers are the same bytes with or without it, and its failures are its own (counted, logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import redis

from predictor.api.errors import UnusablePrediction
from predictor.serving.encoding import answers
from predictor.serving.explain import explanations
from predictor.serving.pipeline import BatchResult, ScoringModel
from predictor.serving.ranges import predict_with_range, range_columns
from predictor.serving.records import OutRecord
from stream_features.contract import OrderCreated
from stream_features.online import get_online_features
from stream_features.vectors import FeatureRows

__all__ = ["ShadowHook", "predict_orders", "score_orders", "score_rows", "served_now"]

log = logging.getLogger("etastream.api")

ShadowHook = Callable[[FeatureRows, BatchResult], None]
"""Takes a scored batch's rows and what was served from them (``ShadowStage`` is one); returns
at once."""


def served_now() -> datetime:
    """Now, at the millisecond precision the stream stamps ``served_at`` with."""
    return datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, UTC)


def score_orders(
    client: redis.Redis,
    orders: Sequence[OrderCreated],
    model: ScoringModel,
    *,
    key_prefix: str = "",
    served_at: datetime | None = None,
    mode: str = "online",
    explain: bool = False,
    shadow: ShadowHook | None = None,
) -> list[bytes | UnusablePrediction]:
    """One ``DeliveryPrediction`` JSON per order, in order, or the reason the model's answer for
    it is unusable (what the stream would dead-letter): the orders' rows read on a blocking
    client (one round trip), then ``score_rows``.

    Raises ``redis.RedisError`` when the state cannot be read, ``ExplainUnavailable`` when
    ``explain`` is asked of a model that cannot.
    """
    rows = get_online_features(client, orders, key_prefix=key_prefix)
    return score_rows(rows, model, served_at=served_at, mode=mode, explain=explain, shadow=shadow)


def score_rows(
    rows: FeatureRows,
    model: ScoringModel,
    *,
    served_at: datetime | None = None,
    mode: str = "online",
    explain: bool = False,
    shadow: ShadowHook | None = None,
) -> list[bytes | UnusablePrediction]:
    """``score_orders`` once the rows are read (the API's batcher awaits its read): one predict
    (of the point and the range); ``explain`` adds each input's contribution
    (``serving.explain``), and ``shadow`` is handed the answers once they are encoded (see the
    module doc). No I/O."""
    durations, bounds = predict_with_range(model, rows.values)
    lows, highs = range_columns(bounds, len(rows.orders))
    reasons = explanations(model, rows.values) if explain else None
    stamp = served_at or served_now()
    durations_s = durations.tolist()
    values = answers(
        rows.orders,
        durations_s,
        rows.freshness_s.tolist(),
        model_name=model.name,
        model_version=model.version,
        served_at=stamp,
        mode=mode,
        lows=lows,
        highs=highs,
        explanations=reasons,
    )
    out: list[bytes | UnusablePrediction] = []
    for order, duration, value in zip(rows.orders, durations_s, values, strict=True):
        if value is None:
            out.append(UnusablePrediction(model.name, model.version, order.order_id, duration))
        else:
            out.append(value)
    if shadow is not None:
        _hand_to_shadow(shadow, rows, values, model)
    return out


def _hand_to_shadow(
    shadow: ShadowHook, rows: FeatureRows, values: Sequence[bytes | None], model: ScoringModel
) -> None:
    """The served answers as the worker's shadow reads a batch's (its predictions' bytes)."""
    served = [
        OutRecord(order.order_id.encode(), value)
        for order, value in zip(rows.orders, values, strict=True)
        if value is not None
    ]
    try:
        shadow(rows, BatchResult(served, model_name=model.name, model_version=model.version))
    except Exception as exc:  # the shadow never touches the answer (e.g. closing at shutdown)
        log.warning("the shadow did not take a batch: %s", exc)


def predict_orders(
    client: redis.Redis,
    orders: Sequence[OrderCreated],
    model: ScoringModel,
    *,
    key_prefix: str = "",
    served_at: datetime | None = None,
    mode: str = "online",
    explain: bool = False,
    shadow: ShadowHook | None = None,
) -> list[bytes]:
    """``score_orders``, raising ``UnusablePrediction`` for the first unusable answer."""
    out = []
    for value in score_orders(
        client,
        orders,
        model,
        key_prefix=key_prefix,
        served_at=served_at,
        mode=mode,
        explain=explain,
        shadow=shadow,
    ):
        if isinstance(value, UnusablePrediction):
            raise value
        out.append(value)
    return out
