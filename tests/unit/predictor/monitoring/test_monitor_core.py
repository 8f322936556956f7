"""The monitor's pure core: rings, error windows, PSI from counts, alerts, join rules, intake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from predictor.models.reference import categorical_reference, numeric_reference, psi
from predictor.monitoring.accuracy import ErrorWindows
from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.drift import (
    PREDICTION,
    DriftWindows,
    ModelReference,
    bin_index,
    psi_from_counts,
)
from predictor.monitoring.intake import IntakeConfig, decode_monitor_batch
from predictor.monitoring.join import Joined, JoinOp, MemoryJoin, delivery_op, prediction_op
from predictor.monitoring.messages import decode_monitor_record, decode_prediction
from predictor.monitoring.rolling import ABS_EDGES_S, Ring, hist_quantile
from predictor.serving.dlq import decode_dead_letter
from predictor.serving.records import RawRecord
from stream_features.contract import DasherEvent, DeliveryPrediction, OrderDelivered, encode, to_ms

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
NOW = datetime(2026, 3, 4, tzinfo=UTC)


def pair(
    i: int,
    error_s: float,
    *,
    market: str = "m1",
    at: datetime = T0,
    range_s: tuple[float, float] | None = None,
    version: str = "1",
) -> Joined:
    """A pair 30 min from order to delivery; ``range_s`` is its p10-p90, absent by default."""
    delivered = to_ms(at)
    low, high = range_s or (float("nan"), float("nan"))
    return Joined(
        order_id=f"o{i}",
        model_name="eta",
        model_version=version,
        market_id=market,
        store_id="s1",
        created_ms=delivered - 1_800_000,
        served_ms=delivered - 1_799_990,
        delivered_ms=delivered,
        predicted_s=1800.0 + error_s,
        freshness_s=30.0,
        features=None,
        p10_s=low,
        p90_s=high,
    )


def prediction(
    i: int,
    at: datetime = T0,
    *,
    duration_s: float = 1800.0,
    features: dict[str, float] | None = None,
    freshness_s: float | None = 10.0,
    version: str = "1",
) -> DeliveryPrediction:
    return DeliveryPrediction(
        order_id=f"o{i}",
        store_id="s1",
        market_id="m1",
        created_at=at,
        predicted_duration_s=duration_s,
        predicted_delivery_at=at + timedelta(seconds=duration_s),
        model_name="eta",
        model_version=version,
        mode="streaming",
        served_at=at + timedelta(milliseconds=20),
        feature_freshness_s=freshness_s,
        features=features,
    )


# --- rings and windows ----------------------------------------------------------------------


def test_a_ring_sums_its_window_and_refuses_what_is_older_than_it_holds() -> None:
    ring = Ring(bucket_s=60, slots=60, width=1)
    minutes = np.arange(120, dtype=np.int64) * 60_000
    late = ring.add(minutes, np.ones((120, 1)))

    assert late == 60  # the first hour no longer fits once the second arrived
    assert ring.window(int(minutes[-1]), 3600)[0] == 60
    assert ring.window(int(minutes[-1]), 900)[0] == 15
    assert ring.add(np.array([0], dtype=np.int64), np.ones((1, 1))) == 1


def test_histogram_quantile_is_within_the_bin_ratio_of_the_exact_one() -> None:
    values = np.random.default_rng(0).lognormal(np.log(400), 0.8, 20_000)
    counts = np.bincount(
        np.searchsorted(ABS_EDGES_S, values, side="right") - 1, minlength=ABS_EDGES_S.size
    ).astype(float)
    estimate = hist_quantile(counts, ABS_EDGES_S, 0.9)

    assert estimate is not None
    assert abs(estimate / np.quantile(values, 0.9) - 1) < 0.05
    assert hist_quantile(np.zeros(3), np.array([0.0, 1.0, 2.0]), 0.9) is None


def test_error_windows_keep_mae_bias_and_p90_per_group_over_each_window() -> None:
    windows = ErrorWindows()
    windows.add([pair(i, 300.0, market="m1", at=T0 - timedelta(hours=2)) for i in range(10)])
    windows.add([pair(100 + i, -100.0, market="m2") for i in range(10)])

    hour, day = windows.stats("1h"), windows.stats("24h")
    assert ("market", "m1") not in hour  # two hours old: outside the hour, inside the day
    assert hour[("market", "m2")].mae_s == pytest.approx(100.0)
    assert hour[("all", "*")].count == 10
    assert day[("all", "*")].count == 20
    assert day[("all", "*")].mae_s == pytest.approx(200.0)
    assert day[("all", "*")].bias_s == pytest.approx(100.0)
    assert day[("model", "eta:1")].count == 20
    assert day[("market", "m1")].p90_abs_error_s == pytest.approx(300.0, rel=0.05)
    with pytest.raises(ValueError, match="window must be one of"):
        windows.stats("2h")


def test_range_coverage_and_width_count_only_the_pairs_that_carry_a_range() -> None:
    windows = ErrorWindows()
    # version 2 has a range: 8 of 10 actual durations (1800 s) inside, widths 600 s and 1200 s
    inside = [pair(i, 0.0, range_s=(1500.0, 2100.0), version="2") for i in range(4)]
    inside += [pair(10 + i, 0.0, range_s=(1200.0, 2400.0), version="2") for i in range(4)]
    edge = [pair(20, 0.0, range_s=(1800.0, 2400.0), version="2")]  # on the bound: inside
    outside = [pair(30, 0.0, range_s=(1900.0, 2500.0), version="2")]
    # version 1 has none: 10 pairs in the MAE, no hit and no miss of the range
    windows.add([*inside, *edge, *outside, *(pair(40 + i, 60.0) for i in range(10))])
    windows.add([pair(60, 0.0, range_s=(0.0, 100.0), version="2", at=T0 - timedelta(hours=3))])

    hour, day = windows.stats("1h"), windows.stats("24h")
    ranged = hour[("model", "eta:2")]
    assert (ranged.count, ranged.range_samples) == (10, 10)
    assert ranged.range_coverage == pytest.approx(0.9)
    assert ranged.range_width_s == pytest.approx((4 * 600 + 4 * 1200 + 600 + 600) / 10)
    old = hour[("model", "eta:1")]
    assert (old.count, old.range_samples, old.range_coverage, old.range_width_s) == (
        10,
        0,
        None,
        None,
    )
    everything = hour[("all", "*")]
    assert (everything.count, everything.range_samples) == (20, 10)
    assert everything.range_coverage == pytest.approx(0.9)  # version 1 is not a miss
    assert day[("model", "eta:2")].range_coverage == pytest.approx(9 / 11)  # the 3 h old miss


def ranged_pairs(n: int, start: int, inside: int, at: datetime) -> list[Joined]:
    """``n`` pairs of version 2 at ``at``, the first ``inside`` with the actual in the range."""
    return [
        pair(start + i, 0.0, at=at, range_s=(1200.0, 2400.0) if i < inside else (0.0, 600.0))
        for i in range(n)
    ]


def test_coverage_alert_fires_out_of_the_band_either_side_and_clears_with_hysteresis() -> None:
    config = MonitorConfig(coverage_min_samples=100, mae_alert_s=1e9, min_samples=1)
    monitor = Monitor(config, lambda _n, _v: None)
    monitor.add_joined(ranged_pairs(100, 0, 80, T0))
    assert monitor.alerts(NOW) == []  # 80 %: on target

    later = T0 + timedelta(hours=2)  # the first hour has left the window
    monitor.add_joined(ranged_pairs(100, 1000, 70, later))
    firing = monitor.alerts(NOW)
    assert {(a.kind, a.state, a.scope, a.feature) for a in firing} == {
        ("coverage", "firing", scope, "below") for scope in ("all", "model", "market")
    }
    assert firing[0].value == pytest.approx(0.10) and firing[0].threshold == 0.05
    assert firing[0].samples == 100

    # back to the band's edge: 150 of 200 (75 %) is not within the hysteresis, still firing
    monitor.add_joined(ranged_pairs(100, 2000, 80, later))
    assert monitor.alerts(NOW) == []
    monitor.add_joined(ranged_pairs(200, 3000, 170, later))  # 320 of 400: 80 %
    assert {(a.state, a.feature) for a in monitor.alerts(NOW)} == {("resolved", "below")}

    much_later = later + timedelta(hours=2)
    monitor.add_joined(ranged_pairs(200, 5000, 196, much_later))  # 98 %: too wide a range
    assert {(a.state, a.feature) for a in monitor.alerts(NOW)} == {("firing", "above")}
    # two hours on, 50 misses: the 'above' reading is gone, and 50 are too few to fire 'below'
    monitor.add_joined(ranged_pairs(50, 6000, 0, much_later + timedelta(hours=2)))
    assert {(a.state, a.feature) for a in monitor.alerts(NOW)} == {("resolved", "above")}


def test_coverage_alert_waits_for_enough_ranged_pairs() -> None:
    monitor = Monitor(MonitorConfig(coverage_min_samples=100), lambda _n, _v: None)
    monitor.add_joined(ranged_pairs(99, 0, 0, T0))  # every one a miss, but 99 of them
    monitor.add_joined([pair(500 + i, 0.0) for i in range(200)])  # rangeless: not counted
    assert [a for a in monitor.alerts(NOW) if a.kind == "coverage"] == []


# --- drift ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_psi_from_bin_counts_equals_the_artifacts_psi_of_the_values(kind: str) -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(0, 1, 5000) if kind == "numeric" else rng.integers(0, 6, 5000) * 1.0
    ref = numeric_reference(train) if kind == "numeric" else categorical_reference(train)
    live = rng.normal(0.5, 1.3, 2000) if kind == "numeric" else rng.integers(0, 9, 2000) * 1.0
    live[:100] = np.nan

    counts = np.bincount(bin_index(ref, live), minlength=len(ref["shares"]) + 1).astype(float)
    assert psi_from_counts(ref, counts) == pytest.approx(psi(ref, live), rel=1e-9)
    assert psi_from_counts(ref, np.zeros_like(counts)) is None


def reference(seed: int = 0) -> ModelReference:
    rng = np.random.default_rng(seed)
    columns = {
        "busy": numeric_reference(rng.uniform(0, 1, 4000)),
        "gappy": numeric_reference(np.where(rng.random(4000) < 0.1, np.nan, 1.0)),
        "order__hour_of_day": numeric_reference(rng.integers(0, 24, 4000) * 1.0),
        PREDICTION: numeric_reference(rng.normal(1800, 300, 4000)),
    }
    return ModelReference(columns)


def drift_monitor(**config: object) -> Monitor:
    """A monitor over ``reference()``; its windows are judged from the first prediction on
    (``drift_settle_s=0``) unless a test says otherwise."""
    ref = reference()
    config = {"drift_settle_s": 0.0, **config}
    return Monitor(MonitorConfig(min_samples=50, **config), lambda _n, _v: ref)  # type: ignore[arg-type]  # **config: object into MonitorConfig's typed fields


def steady(
    n: int, start: datetime, span: timedelta, rng: np.random.Generator, **kw: object
) -> list[DeliveryPrediction]:
    return [
        prediction(
            i,
            start + span * i / n,
            duration_s=float(rng.normal(1800, 300)),
            features={
                "busy": float(rng.uniform(0, 1)),
                "order__hour_of_day": 3.0,
                **({"gappy": 1.0} if rng.random() > 0.1 else {}),
            },
            **kw,  # type: ignore[arg-type]  # **kw: object into the pair's typed fields
        )
        for i in range(n)
    ]


def test_drift_is_judged_once_the_window_is_full_and_alerts_once_per_crossing() -> None:
    rng = np.random.default_rng(1)
    monitor = drift_monitor()
    day = timedelta(days=1)
    monitor.add_predictions(steady(2000, T0 - day, day, rng))
    # hour_of_day is all 3 (PSI huge) but exempt; the rest looks like training
    assert monitor.alerts(NOW) == []

    shifted = [
        prediction(i, T0 + timedelta(minutes=i / 10), duration_s=3600.0, features={"busy": 0.99})
        for i in range(3000)
    ]
    monitor.add_predictions(shifted[:1500])
    alerts = monitor.alerts(NOW)
    kinds = {(a.kind, a.feature) for a in alerts}
    assert ("psi", "busy") in kinds
    assert ("psi", "prediction") in kinds
    assert ("missing_share", "gappy") in kinds  # gone from every shifted prediction
    assert ("psi", "order__hour_of_day") not in kinds
    assert all(a.state == "firing" and a.window == "24h" for a in alerts)
    assert all(a.scope == "model" and a.key == "eta:1" for a in alerts)

    monitor.add_predictions(shifted[1500:])
    assert monitor.alerts(NOW) == []  # still above: no new alert


def test_a_partly_filled_drift_window_raises_nothing() -> None:
    monitor = drift_monitor()
    monitor.add_predictions(
        [prediction(i, T0 + timedelta(seconds=i), duration_s=9000.0) for i in range(500)]
    )
    summary = monitor.drift.summaries("24h")[0]
    assert summary.prediction_psi is not None and summary.prediction_psi > 1
    assert summary.covered_s < 86400
    assert monitor.alerts(NOW) == []


def test_no_state_share_and_freshness_come_from_the_predictions_alone() -> None:
    monitor = drift_monitor(drift_window="1h", freshness_alert_s=600.0)
    monitor.add_predictions(
        [
            prediction(i, T0 + timedelta(seconds=3 * i), freshness_s=None if i % 4 else 5000.0)
            for i in range(1300)
        ]
    )
    (summary,) = monitor.drift.summaries("1h")
    assert summary.with_features == 0 and summary.features[0].psi is None  # predictions only
    assert summary.no_state_share == pytest.approx(0.75, abs=0.01)
    assert summary.freshness_p90_s == pytest.approx(5000.0, rel=0.05)
    kinds = {a.kind for a in monitor.alerts(NOW)}
    assert {"no_state_share", "freshness"} <= kinds


def test_a_version_without_a_readable_artifact_is_watched_without_drift() -> None:
    monitor = Monitor(MonitorConfig(min_samples=1), lambda _n, _v: None)
    monitor.add_predictions([prediction(1)])
    (summary,) = monitor.drift.summaries("1h")
    assert summary.reference == "unavailable"
    assert summary.prediction_psi is None and summary.features == []


def test_mae_alert_fires_once_then_resolves_when_the_error_falls() -> None:
    monitor = Monitor(MonitorConfig(min_samples=20, mae_alert_s=600), lambda _n, _v: None)
    monitor.add_joined([pair(i, 900.0, at=T0 + timedelta(seconds=i)) for i in range(30)])
    firing = monitor.alerts(NOW)
    assert {(a.state, a.scope, a.key) for a in firing} == {
        ("firing", "all", "*"),
        ("firing", "model", "eta:1"),
        ("firing", "market", "m1"),
    }
    monitor.add_joined([pair(100 + i, 1000.0, at=T0 + timedelta(seconds=40)) for i in range(5)])
    assert monitor.alerts(NOW) == []
    later = T0 + timedelta(hours=2)
    monitor.add_joined([pair(200 + i, 10.0, at=later) for i in range(30)])
    assert {a.state for a in monitor.alerts(NOW)} == {"resolved"}

    summaries = monitor.summaries(NOW)
    assert [s.window for s in summaries] == ["15m", "1h", "24h"]
    assert summaries[0].totals["joined"] == 65
    raw = encode(summaries[2])
    assert decode_monitor_record(raw) == summaries[2]


# --- join rules -----------------------------------------------------------------------------


def delivered(order_id: str, at: datetime = T0) -> OrderDelivered:
    return OrderDelivered(order_id=order_id, store_id="s1", market_id="m1", delivered_at=at)


def test_the_join_matches_either_order_each_model_once_and_counts_duplicates() -> None:
    store = MemoryJoin()
    p1, p2 = prediction(1), prediction(2)
    challenger = prediction(1).model_copy(update={"model_name": "eta-challenger"})

    first = store.join([prediction_op(p1), delivery_op(delivered("o2"))])
    assert first.pairs == []
    second = store.join([delivery_op(delivered("o1")), prediction_op(p2)])
    assert sorted(order for order, *_ in second.pairs) == ["o1", "o2"]
    third = store.join([prediction_op(challenger), prediction_op(p1), delivery_op(delivered("o1"))])
    assert [(o, m) for o, m, *_ in third.pairs] == [("o1", "eta-challenger")]
    assert third.duplicates == 2


def test_intake_routes_each_topic_and_dead_letters_anything_else_with_its_reason() -> None:
    config = IntakeConfig("deliveries", "predictions", max_future_skew_s=60)
    future = datetime.now(UTC) + timedelta(hours=2)
    shift_start = DasherEvent(dasher_id="d1", market_id="m1", kind="shift_start", at=T0)
    records = [
        RawRecord(encode(prediction(1)), "predictions", 0, 1),
        RawRecord(encode(delivered("o1")), "deliveries", 0, 2),
        RawRecord(b"not json", "predictions", 1, 3, b"k"),
        RawRecord(encode(shift_start), "deliveries", 0, 4),
        RawRecord(encode(delivered("o9", future)), "deliveries", 0, 5),
        RawRecord(None, "deliveries", 0, 6),
        RawRecord(
            orjson.dumps({"type": "DeliveryPrediction", "order_id": "x"}), "predictions", 1, 7
        ),
    ]
    batch = decode_monitor_batch(records, config, now_ms=to_ms(datetime.now(UTC)))

    assert [p.order_id for p in batch.predictions] == ["o1"]
    assert [op.kind for op in batch.ops] == ["P", "D"]
    assert batch.rejected == {"predictions": 2, "deliveries": 3}
    letters = [decode_dead_letter(d.value) for d in batch.dead_letters]
    assert [letter.source_offset for letter in letters] == [3, 4, 5, 6, 7]
    assert "not valid JSON" in letters[0].reason
    assert "does not belong on topic 'deliveries'" in letters[1].reason
    assert "in the future" in letters[2].reason and letters[2].field == "delivered_at"
    assert "empty message" in letters[3].reason
    assert letters[4].field is not None  # the first missing field is named
    assert batch.reasons[0].startswith("predictions[1]@3: ")


def test_packed_sides_carry_what_the_monitor_needs() -> None:
    p = prediction(5, features={"busy": 0.5}, freshness_s=None)
    op = prediction_op(p)
    assert op == JoinOp("P", "o5", "eta", op.payload)
    ((order, model, packed_p, packed_d),) = (
        MemoryJoin().join([op, delivery_op(delivered("o5", T0 + timedelta(minutes=40)))]).pairs
    )
    from predictor.monitoring.join import joined_from

    joined = joined_from(order, model, packed_p, packed_d)
    assert joined.actual_s == 2400.0 and joined.error_s == -600.0
    assert joined.features == {"busy": 0.5} and np.isnan(joined.freshness_s)
    assert decode_prediction(encode(p)) == p
    assert not joined.has_range  # a model without a range

    ranged = prediction(6).model_copy(
        update={"predicted_duration_p10_s": 1500.0, "predicted_duration_p90_s": 2500.0}
    )
    (sides,) = MemoryJoin().join([prediction_op(ranged), delivery_op(delivered("o6"))]).pairs
    back = joined_from(*sides)
    assert (back.p10_s, back.p90_s, back.has_range) == (1500.0, 2500.0, True)


def test_a_market_feature_gets_no_psi_from_a_few_market_states_and_says_how_many() -> None:
    rng = np.random.default_rng(2)
    ref = ModelReference(
        {
            "market__busy_ratio": numeric_reference(rng.uniform(0, 1, 4000)),
            "store__orders_created__10m": numeric_reference(rng.uniform(0, 1, 4000)),
            PREDICTION: numeric_reference(rng.normal(1800, 300, 4000)),
        }
    )
    windows = DriftWindows(lambda _n, _v: ref, min_entities=10)
    preds = [
        prediction(i, T0 + timedelta(seconds=i), features={
            "market__busy_ratio": float(rng.uniform(0, 1)),
            "store__orders_created__10m": float(rng.uniform(0, 1)),
        }).model_copy(update={"market_id": f"m{i % 4}", "store_id": f"s{i % 50}"})
        for i in range(800)
    ]  # fmt: skip
    windows.add(preds)  # 4 markets, 50 stores, within 15 minutes of one hour
    by_name = {f.feature: f for f in windows.summaries("15m")[0].features}
    market, store = by_name["market__busy_ratio"], by_name["store__orders_created__10m"]
    assert market.psi is None and market.entities == 4
    assert store.psi is not None and store.psi < 0.1 and store.entities == 50
    # the same four markets over three hours are twelve states: the PSI is back
    later = [
        p.model_copy(update={"created_at": p.created_at + timedelta(hours=h)})
        for h in (1, 2) for p in preds
    ]  # fmt: skip
    windows.add(later)
    day = {f.feature: f for f in windows.summaries("24h")[0].features}["market__busy_ratio"]
    assert day.entities == 12 and day.psi is not None and day.psi < 0.1


def test_a_psi_over_too_few_values_is_not_computed_nor_alerted() -> None:
    """Sampling noise over ~50 predictions gives PSI 0.3-2 on an unmoved distribution: no PSI
    below ``psi_min_samples``, the summary keeping the count instead (#22.8)."""
    rng = np.random.default_rng(3)
    monitor = drift_monitor(drift_window="1h", psi_min_samples=200)
    monitor.add_predictions(steady(60, T0, timedelta(hours=2), rng))
    (summary,) = monitor.drift.summaries("1h")
    assert summary.covered_s == 3600 and summary.min_samples == 200
    assert summary.prediction_psi is None
    busy = next(f for f in summary.features if f.feature == "busy")
    assert busy.psi is None and busy.samples == summary.predictions < 200
    assert monitor.alerts(NOW) == []

    monitor = drift_monitor(drift_window="1h", psi_min_samples=20)  # the same values, counted
    monitor.add_predictions(steady(60, T0, timedelta(hours=2), np.random.default_rng(3)))
    (summary,) = monitor.drift.summaries("1h")
    assert summary.prediction_psi is not None


def test_a_window_reaching_into_the_first_settle_seconds_is_not_judged() -> None:
    """A stream that has just started has windows still filling: predictions of its first
    ``drift_settle_s`` are counted and shown, never alerted on; a shift after it still is."""
    rng = np.random.default_rng(4)
    monitor = drift_monitor(drift_window="1h", drift_settle_s=5400.0)
    unsettled = [
        prediction(i, T0 + timedelta(seconds=2 * i), duration_s=9000.0, features={"busy": 0.99})
        for i in range(2700)  # the first 90 minutes: far from the reference
    ]
    monitor.add_predictions(unsettled)
    (summary,) = monitor.drift.summaries("1h")
    assert summary.prediction_psi is not None and summary.prediction_psi > 1
    assert summary.covered_s < summary.window_s  # the window reaches into the settle
    assert monitor.alerts(NOW) == []
    # an hour of steady traffic after the settle: the window is full and raises nothing
    monitor.add_predictions(steady(1800, T0 + timedelta(seconds=5400), timedelta(hours=1), rng))
    (summary,) = monitor.drift.summaries("1h")
    assert summary.covered_s == 3600
    assert not [a for a in monitor.alerts(NOW) if a.kind == "psi"]
    # then a real shift: alerted
    later = T0 + timedelta(seconds=9000)
    monitor.add_predictions(
        [
            prediction(i, later + timedelta(seconds=2 * i), duration_s=9000.0)
            for i in range(20_000, 21_800)
        ]
    )
    assert ("psi", "prediction") in {(a.kind, a.feature) for a in monitor.alerts(NOW)}
