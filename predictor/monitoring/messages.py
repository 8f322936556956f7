"""What the monitor publishes on the monitoring topic, and how it reads predictions.

The records are the monitor's own (the contract holds what producers and the worker exchange):
``MonitorSummary`` per window at every publish, ``MonitorAlert`` when a threshold is crossed
(once per crossing, and once more when it clears), ``RetrainReport`` after a retraining run.
They share the contract's conventions: ``type`` and ``schema_version`` on every record, UTC
times, JSON on the wire. ``decode_monitor_record`` reads any of them back.
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from stream_features.contract import SCHEMA_VERSION, DeliveryPrediction, ShadowPrediction
from stream_features.errors import RejectedMessage

__all__ = [
    "ALL_MARKETS",
    "AlertKind",
    "ChampionChallenger",
    "ErrorStats",
    "FeatureDrift",
    "ModelDrift",
    "MonitorAlert",
    "MonitorRecord",
    "MonitorSummary",
    "RetrainReport",
    "decode_monitor_record",
    "decode_prediction",
    "decode_shadow",
]

ALL_MARKETS = "*"
"""The key of a figure over every market (as the error windows' ``all`` scope has it)."""

AlertKind = Literal["mae", "psi", "missing_share", "no_state_share", "freshness", "coverage"]
Scope = Literal["all", "model", "market"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1


class ErrorStats(_Record):
    """Prediction error over one window for one group (``scope`` all, a model, a market)."""

    scope: Scope
    key: str = Field(description="'*' for all, 'name:version' for a model, the market id")
    count: int
    mae_s: float | None = None
    bias_s: float | None = Field(None, description="mean of predicted - actual: > 0 is too slow")
    p90_abs_error_s: float | None = None
    range_samples: int = Field(
        0, description="pairs whose prediction carried an ETA range (p10-p90)"
    )
    range_coverage: float | None = Field(
        None,
        description="share of those pairs whose actual duration fell inside the range; None "
        "without any (a model without a range is neither a hit nor a miss)",
    )
    range_width_s: float | None = Field(None, description="mean p90 - p10 of those pairs")


class FeatureDrift(_Record):
    feature: str
    psi: float | None = Field(
        None,
        description="None with too few values in the window (samples below the version's "
        "min_samples), or for a store or market feature whose window holds fewer distinct ones "
        "than the monitor's minimum (see entities)",
    )
    samples: int | None = Field(
        None, description="values of the feature in the window (predictions with features)"
    )
    entities: int | None = Field(
        None,
        description="states behind a store or market feature's values in the window (distinct "
        "entity and hour of event time); None for the order's own values",
    )
    missing_share: float | None = None
    reference_missing_share: float


class ModelDrift(_Record):
    """Live inputs and outputs of one model version against its artifact's reference."""

    model_name: str
    model_version: str
    window_s: int
    covered_s: int = Field(
        description="seconds of event time the window holds since this version's first "
        "prediction (drift alerts wait for a full window)"
    )
    predictions: int
    min_samples: int = Field(
        1,
        description="fewest values of a column in the window for its PSI "
        "(ETA_MONITOR_PSI_MIN_SAMPLES); below it the PSI is None: too few samples",
    )
    with_features: int = Field(description="predictions that carried their features")
    reference: Literal["artifact", "unavailable"]
    prediction_psi: float | None = None
    features: list[FeatureDrift]
    no_state_share: float | None = Field(
        None,
        description="share of predictions without feature freshness: a store or market had "
        "no state yet, so its streaming features were defaults",
    )
    freshness_p50_s: float | None = None
    freshness_p90_s: float | None = None


class ChampionChallenger(_Record):
    """The champion and a challenger (shadow) on the same delivered orders (``paired``)."""

    model_name: str
    champion_version: str
    challenger_version: str
    market_id: str = Field(
        ALL_MARKETS, description=f'the market of the orders compared, "{ALL_MARKETS}" for all'
    )
    window_s: int | None = Field(None, description="None: every recorded pair (the guard)")
    orders: int = Field(description="delivered orders both versions predicted")
    champion_mae_s: float | None = None
    challenger_mae_s: float | None = None
    champion_bias_s: float | None = None
    challenger_bias_s: float | None = None
    champion_p90_abs_error_s: float | None = None
    challenger_p90_abs_error_s: float | None = None
    mean_abs_error_diff_s: float | None = Field(
        None, description="mean of |challenger error| - |champion error|: < 0 is better"
    )
    diff_ci_low_s: float | None = Field(None, description="95 % CI of that mean, lower end")
    diff_ci_high_s: float | None = Field(None, description="95 % CI of that mean, upper end")
    challenger_better: int = Field(0, description="orders the challenger got closer on")
    challenger_worse: int = Field(0, description="orders the champion got closer on")
    sign_test_p: float | None = Field(None, description="two-sided, ties left out")


class MonitorSummary(_Record):
    type: Literal["MonitorSummary"] = "MonitorSummary"
    window: Literal["15m", "1h", "24h"]
    window_s: int
    published_at: AwareDatetime
    errors_until: AwareDatetime | None = Field(
        None, description="event time the error window ends at: the latest delivery joined"
    )
    drift_until: AwareDatetime | None = Field(
        None, description="event time the drift window ends at: the latest order predicted"
    )
    errors: list[ErrorStats]
    drift: list[ModelDrift]
    totals: dict[str, int] = Field(description="counters since the monitor started")
    shadow: list[ChampionChallenger] = Field(
        default_factory=list,
        description="champion against each challenger on the same orders (ETA_SHADOW_STAGE)",
    )


class MonitorAlert(_Record):
    type: Literal["MonitorAlert"] = "MonitorAlert"
    kind: AlertKind
    state: Literal["firing", "resolved"]
    window: Literal["15m", "1h", "24h"]
    scope: Scope
    key: str
    feature: str | None = Field(
        None,
        description="the feature of a PSI or missing-share alert; for a coverage alert the "
        "side of the band the coverage left by: 'below' (durations fall outside the range "
        "more often than claimed) or 'above' (the range is wider than it needs to be)",
    )
    value: float = Field(
        description="the watched value; for a coverage alert its distance from the target "
        "(|coverage - target|), so that it fires above the tolerance like every other kind"
    )
    threshold: float
    samples: int
    event_time: AwareDatetime = Field(description="end of the window the value was read over")
    raised_at: AwareDatetime


class RetrainReport(_Record):
    type: Literal["RetrainReport"] = "RetrainReport"
    model_name: str
    trigger: str
    outcome: Literal["promoted", "staged", "refused", "skipped", "failed"]
    reason: str
    rows: int
    staged_version: str | None = None
    production_version: str | None = None
    holdout_rows: int = 0
    new_mae_s: float | None = None
    production_mae_s: float | None = None
    at: AwareDatetime


MonitorRecord = Annotated[
    MonitorSummary | MonitorAlert | RetrainReport, Field(discriminator="type")
]
_RECORD: TypeAdapter[MonitorSummary | MonitorAlert | RetrainReport] = TypeAdapter(MonitorRecord)


def _rejected(exc: ValidationError) -> RejectedMessage:
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    more = exc.error_count() - 1
    return RejectedMessage(err["msg"] + (f" (and {more} more)" if more else ""), field)


def _json(raw: bytes | str, max_bytes: int) -> object:
    if len(raw) > max_bytes:
        raise RejectedMessage(f"message of {len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RejectedMessage(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RejectedMessage(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise RejectedMessage(
            f"unknown schema_version {version!r}; this build reads {SCHEMA_VERSION}",
            "schema_version",
        )
    return data


def decode_prediction(raw: bytes | str, max_bytes: int = 1_000_000) -> DeliveryPrediction:
    """Bytes to a ``DeliveryPrediction``, or ``RejectedMessage`` with the reason.

    (The contract's ``decode`` reads the input events; predictions are the worker's output.)

    >>> decode_prediction(b'{"type":"OrderDelivered"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_features.errors.RejectedMessage: type: Input should be 'DeliveryPrediction' ...
    """
    data = _json(raw, max_bytes)
    try:
        return DeliveryPrediction.model_validate(data)
    except ValidationError as exc:
        raise _rejected(exc) from None


def decode_shadow(raw: bytes | str, max_bytes: int = 1_000_000) -> ShadowPrediction:
    """Bytes to a ``ShadowPrediction`` (the worker's shadow), or ``RejectedMessage``."""
    data = _json(raw, max_bytes)
    try:
        return ShadowPrediction.model_validate(data)
    except ValidationError as exc:
        raise _rejected(exc) from None


def decode_monitor_record(
    raw: bytes | str, max_bytes: int = 10_000_000
) -> MonitorSummary | MonitorAlert | RetrainReport:
    """A monitoring-topic record back as its model (tools, tests and the report read them)."""
    data = _json(raw, max_bytes)
    try:
        return _RECORD.validate_python(data)
    except ValidationError as exc:
        raise _rejected(exc) from None
