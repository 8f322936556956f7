"""Champion against challenger in the monitor: the join, the paired numbers, their export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.intake import IntakeConfig, decode_monitor_batch
from predictor.monitoring.join import SHADOW_PREFIX, MemoryJoin, paired_from
from predictor.monitoring.messages import ALL_MARKETS, MonitorSummary
from predictor.monitoring.metrics import MonitorMetrics
from predictor.monitoring.paired import Z_95, PairedWindows, compare
from predictor.monitoring.recording import (
    JoinedLog,
    frame_to_paired,
    joined_frame,
    paired_frame,
    read_paired,
)
from predictor.monitoring.report import render_report
from predictor.serving.records import RawRecord
from stream_features.contract import OrderDelivered, ShadowPrediction, encode

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
INTAKE = IntakeConfig("deliveries", "predictions", shadow_topic="shadow")
NOW = int(T0.timestamp() * 1000) + 3_600_000


def shadow(i: int, champion_s: float, challenger_s: float) -> ShadowPrediction:
    return ShadowPrediction(
        order_id=f"o{i}",
        store_id="s1",
        market_id="m1",
        created_at=T0,
        model_name="eta",
        champion_version="1",
        champion_predicted_duration_s=champion_s,
        challenger_stage="staging",
        challenger_version="2",
        challenger_predicted_duration_s=challenger_s,
        served_at=T0,
    )


def delivered(i: int, after_s: float) -> OrderDelivered:
    return OrderDelivered(
        order_id=f"o{i}",
        store_id="s1",
        market_id="m1",
        delivered_at=T0 + timedelta(seconds=after_s),
    )


def test_compare_gives_the_normal_ci_of_the_mean_difference() -> None:
    rng = np.random.default_rng(3)
    actual = rng.uniform(600, 3600, 1000)
    champion = actual + rng.normal(0, 300, 1000)
    challenger = actual + rng.normal(0, 200, 1000)
    c = compare("eta", "1", "2", champion, challenger, actual)
    d = np.abs(challenger - actual) - np.abs(champion - actual)
    half = Z_95 * d.std(ddof=1) / np.sqrt(d.size)
    assert c.orders == 1000
    assert c.mean_abs_error_diff_s == pytest.approx(d.mean())
    assert c.diff_ci_low_s == pytest.approx(d.mean() - half)
    assert c.diff_ci_high_s == pytest.approx(d.mean() + half)
    assert c.diff_ci_high_s is not None and c.diff_ci_high_s < 0  # clearly better
    assert c.challenger_better + c.challenger_worse == 1000
    assert c.sign_test_p is not None and c.sign_test_p < 1e-6
    assert c.champion_mae_s == pytest.approx(np.abs(champion - actual).mean())
    assert c.challenger_p90_abs_error_s == pytest.approx(
        np.quantile(np.abs(challenger - actual), 0.9), rel=0.06
    )


def test_shadow_records_join_their_deliveries_apart_from_served_predictions() -> None:
    records = [RawRecord(encode(shadow(i, 1000.0, 1100.0)), "shadow", 0, i) for i in range(3)]
    records += [RawRecord(encode(delivered(i, 1200.0)), "deliveries", 0, i) for i in range(3)]
    batch = decode_monitor_batch(records, INTAKE, NOW)
    assert not batch.dead_letters and not batch.predictions
    result = MemoryJoin().join(batch.ops)
    assert {p[1] for p in result.pairs} == {SHADOW_PREFIX + "eta"}
    pairs = [paired_from(*p) for p in result.pairs]
    assert [(p.champion_s, p.challenger_s, p.actual_s) for p in pairs] == [(1000, 1100, 1200)] * 3

    monitor = Monitor(MonitorConfig(), lambda _name, _version: None)
    monitor.add_paired(pairs)
    summary = monitor.summaries(T0)[1]
    c, in_m1 = summary.shadow  # every market, then each market
    assert (c.market_id, in_m1.market_id) == (ALL_MARKETS, "m1")
    assert in_m1.model_dump(exclude={"market_id"}) == c.model_dump(exclude={"market_id"})
    assert (c.champion_version, c.challenger_version, c.orders) == ("1", "2", 3)
    assert (c.champion_mae_s, c.challenger_mae_s) == (200.0, 100.0)
    assert (c.champion_bias_s, c.challenger_bias_s) == (-200.0, -100.0)
    assert c.mean_abs_error_diff_s == -100.0 and c.challenger_better == 3
    assert monitor.totals["shadow_joined"] == 3

    page, _figures = render_report(joined_frame([]), monitor.summaries(T0), psi_threshold=0.2)
    assert "eta:1 vs 2" in page and "Champion and challenger" in page

    metrics = MonitorMetrics()
    metrics.publish(monitor.summaries(T0))
    labels = {"window": "1h", "model": "eta", "champion": "1", "challenger": "2", "market": "*"}
    get = metrics.registry.get_sample_value
    assert get("eta_monitor_shadow_orders", labels) == 3
    assert get("eta_monitor_shadow_mae_seconds", {**labels, "role": "challenger"}) == 100.0
    assert get("eta_monitor_shadow_abs_error_diff_seconds", {**labels, "bound": "mean"}) == -100.0
    assert get("eta_monitor_shadow_orders", {**labels, "market": "m1"}) == 3


def test_a_bad_shadow_record_is_a_dead_letter() -> None:
    bad = RawRecord(b'{"type":"ShadowPrediction","order_id":"o1"}', "shadow", 0, 7)
    batch = decode_monitor_batch([bad], INTAKE, NOW)
    assert batch.rejected["shadow"] == 1 and len(batch.dead_letters) == 1


def test_windows_keep_each_pairing_of_versions_apart(tmp_path: Path) -> None:
    windows = PairedWindows()
    made = []
    for version in ("2", "3"):
        s = shadow(0, 1000.0, 900.0).model_copy(update={"challenger_version": version})
        joined = MemoryJoin().join(
            [
                *decode_monitor_batch([RawRecord(encode(s), "shadow", 0, 0)], INTAKE, NOW).ops,
                *decode_monitor_batch(
                    [RawRecord(encode(delivered(0, 800.0)), "deliveries", 0, 0)], INTAKE, NOW
                ).ops,
            ]
        )
        made += [paired_from(*p) for p in joined.pairs]
    windows.add(made)
    every = [c for c in windows.stats("15m") if c.market_id == ALL_MARKETS]
    assert [(c.challenger_version, c.orders) for c in every] == [("2", 1), ("3", 1)]

    log = JoinedLog(tmp_path, 100, "shadow", paired_frame)
    log.append(made)
    log.append(made)  # a redelivery is recorded once
    log.flush()
    frame = read_paired(tmp_path)
    assert frame.height == 2
    assert frame["challenger_version"].to_list() == ["2", "3"]
    assert frame_to_paired(frame) == made  # what a restarted monitor refills its windows with


def test_an_order_served_by_the_stream_and_the_api_keeps_a_pair_of_each(tmp_path: Path) -> None:
    """Each path's shadow record joins the one delivery; a redelivered copy of either is a
    duplicate, and the recording keeps both pairs with their path."""
    stream = shadow(0, 1000.0, 1100.0)
    online = stream.model_copy(update={"mode": "online", "champion_predicted_duration_s": 900.0})
    records = [RawRecord(encode(s), "shadow", 0, i) for i, s in enumerate((stream, online))]
    records.append(RawRecord(encode(delivered(0, 1200.0)), "deliveries", 0, 0))
    records.append(RawRecord(encode(online), "shadow", 0, 2))  # redelivered after the join
    batch = decode_monitor_batch(records, INTAKE, NOW)
    assert not batch.dead_letters
    result = MemoryJoin().join(batch.ops)
    assert result.duplicates == 1
    pairs = sorted((paired_from(*p) for p in result.pairs), key=lambda p: p.mode)
    assert [(p.model_name, p.mode, p.champion_s) for p in pairs] == [
        ("eta", "online", 900.0),
        ("eta", "streaming", 1000.0),
    ]
    (tmp_path / "shadow").mkdir()
    paired_frame(pairs).write_parquet(tmp_path / "shadow" / "part-0.parquet")
    kept = frame_to_paired(read_paired(tmp_path))
    assert sorted((p.mode, p.champion_s) for p in kept) == [
        ("online", 900.0),
        ("streaming", 1000.0),
    ]


def test_each_market_is_compared_on_its_own_orders_beside_all_of_them() -> None:
    """The challenger is better in m1 and worse in m2: the per-market rows say so, and the
    row over every market pools the two (#23: side by side per market and window)."""
    pairs = []
    for i in range(40):
        market = "m1" if i % 2 else "m2"
        challenger = 1100.0 if market == "m1" else 1600.0  # actual 1200: 100 off, then 400
        record = shadow(i, 1000.0, challenger).model_copy(update={"market_id": market})
        joined = MemoryJoin().join(
            decode_monitor_batch(
                [
                    RawRecord(encode(record), "shadow", 0, i),
                    RawRecord(encode(delivered(i, 1200.0)), "deliveries", 0, i),
                ],
                INTAKE,
                NOW,
            ).ops
        )
        pairs += [paired_from(*p) for p in joined.pairs]
    windows = PairedWindows()
    windows.add(pairs)
    by_market = {c.market_id: c for c in windows.stats("1h")}
    assert set(by_market) == {ALL_MARKETS, "m1", "m2"}
    assert (by_market["m1"].orders, by_market["m2"].orders, by_market[ALL_MARKETS].orders) == (
        20,
        20,
        40,
    )
    assert by_market["m1"].mean_abs_error_diff_s == -100.0  # 100 off against 200 off
    assert by_market["m2"].mean_abs_error_diff_s == 200.0  # 400 off against 200 off
    assert by_market[ALL_MARKETS].mean_abs_error_diff_s == 50.0
    assert windows.late == 0
    page, _figures = render_report(joined_frame([]), [_summary_with(windows)], psi_threshold=0.2)
    assert "<td class=l>m2</td>" in page and "<td class=l>all</td>" in page


def _summary_with(windows: PairedWindows) -> MonitorSummary:
    return MonitorSummary(
        window="1h",
        window_s=3600,
        published_at=T0,
        errors=[],
        drift=[],
        totals={},
        shadow=windows.stats("1h"),
    )
