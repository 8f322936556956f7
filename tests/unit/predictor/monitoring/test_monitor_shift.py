"""Done-when, in the core: an injected dasher shortage raises MAE, PSI and the ETA range's
miss rate, and alerts.

The controlled experiment of ``bench/monitor_scenario.py``: the same simulated marketplace with
and without a shortage in market m1 (a tenth of its dashers from day three, noon), scored by a
model trained on the run without it. Whatever differs between the two runs is the shock's. The
shocked run's m1 MAE and its market-feature PSI rise well above the control's, and it raises
alerts the control never raises, within one (drift) window of the shock: the m1 MAE alert
about 1 h 40 min after it starts (the first orders placed after it are delivered ~30 min
later, and the queue takes an hour to build), PSI alerts on the market features 6-7 h after it
(the 24 h window dilutes a shift in one of two markets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from bench.monitor_scenario import (
    MODEL_NAME,
    SHOCK_MARKET,
    SHOCK_MS,
    WireRecord,
    scenario_records,
    scenario_registry,
)
from predictor.models.registry import Registry
from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.drift import ModelReference
from predictor.monitoring.join import MemoryJoin, delivery_op, joined_from, prediction_op
from predictor.monitoring.messages import MonitorAlert, decode_prediction
from predictor.monitoring.rolling import WINDOWS
from stream_features.contract import OrderDelivered, decode

pytestmark = pytest.mark.slow

CONFIG = MonitorConfig(min_samples=50, coverage_min_samples=20)
"""Defaults but for the sample floors: the shortage starves m1 of deliveries (20-120 an hour,
and the range's coverage there falls to 0 within two hours)."""
CHECKPOINTS_H = (-1, 3, 8)


@dataclass
class Run:
    alerts: list[MonitorAlert] = field(default_factory=list)
    m1_mae: dict[int, float] = field(default_factory=dict)
    market_psi: dict[int, float] = field(default_factory=dict)


def watch(records: tuple[WireRecord, ...], reference: ModelReference) -> Run:
    monitor, join, run = Monitor(CONFIG, lambda _n, _v: reference), MemoryJoin(), Run()
    now, pending = datetime.now(UTC), list(CHECKPOINTS_H)
    for start in range(0, len(records), 200):
        batch = records[start : start + 200]
        predictions, ops = [], []
        for record in batch:
            if record.topic == "predictions":
                predictions.append(decode_prediction(record.value))
                ops.append(prediction_op(predictions[-1]))
            else:
                event = decode(record.value)
                assert isinstance(event, OrderDelivered)
                ops.append(delivery_op(event))
        monitor.add_predictions(predictions)
        monitor.add_joined([joined_from(*p) for p in join.join(ops).pairs])
        run.alerts += monitor.alerts(now)
        while pending and batch[-1].at_ms >= SHOCK_MS + pending[0] * 3_600_000 - 1:
            hour = pending.pop(0)
            errors = monitor.errors.stats(CONFIG.error_window)[("market", SHOCK_MARKET)]
            assert errors.mae_s is not None
            run.m1_mae[hour] = errors.mae_s
            (drift,) = monitor.drift.summaries(CONFIG.drift_window)
            run.market_psi[hour] = max(
                f.psi or 0.0 for f in drift.features if f.feature.startswith("market__")
            )
    for hour in pending:  # the records end at +8 h: read the last state
        run.m1_mae[hour] = monitor.errors.stats("1h")[("market", SHOCK_MARKET)].mae_s or 0.0
        (drift,) = monitor.drift.summaries(CONFIG.drift_window)
        run.market_psi[hour] = max(
            f.psi or 0.0 for f in drift.features if f.feature.startswith("market__")
        )
    return run


def ident(alert: MonitorAlert) -> tuple[str, str, str, str | None]:
    return (alert.kind, alert.scope, alert.key, alert.feature)


@pytest.fixture(scope="module")
def runs() -> tuple[Run, Run]:
    metadata = Registry(scenario_registry()).load(MODEL_NAME, "1").metadata
    reference = ModelReference.from_metadata(metadata)
    return watch(scenario_records(True), reference), watch(scenario_records(False), reference)


def test_mae_and_psi_rise_with_the_shortage_and_not_without_it(runs: tuple[Run, Run]) -> None:
    shocked, control = runs
    assert shocked.m1_mae[-1] == pytest.approx(control.m1_mae[-1])  # the same world before
    assert shocked.market_psi[-1] == pytest.approx(control.market_psi[-1])
    assert shocked.m1_mae[-1] < CONFIG.mae_alert_s

    for hour in (3, 8):
        assert shocked.m1_mae[hour] > 3 * control.m1_mae[hour]
        assert shocked.m1_mae[hour] > 3 * shocked.m1_mae[-1]
    assert shocked.market_psi[8] > CONFIG.psi_alert
    assert shocked.market_psi[8] > 2 * shocked.market_psi[-1]
    assert shocked.market_psi[8] > control.market_psi[8] + 0.1


def test_the_shortage_raises_alerts_the_control_never_does_within_one_window(
    runs: tuple[Run, Run],
) -> None:
    shocked, control = runs
    control_idents = {ident(a) for a in control.alerts}
    own = [a for a in shocked.alerts if a.state == "firing" and ident(a) not in control_idents]

    mae = [a for a in own if a.kind == "mae" and a.key == SHOCK_MARKET]
    psi = [a for a in own if a.kind == "psi" and (a.feature or "").startswith("market__")]
    assert mae and psi, [ident(a) for a in own]
    one_window_ms = WINDOWS[CONFIG.drift_window] * 1000
    for alert in (mae[0], psi[0]):
        at = alert.event_time.timestamp() * 1000
        assert SHOCK_MS < at < SHOCK_MS + one_window_ms
    assert mae[0].event_time.timestamp() * 1000 < SHOCK_MS + 2 * 3_600_000
    assert mae[0].value > CONFIG.mae_alert_s and mae[0].samples >= CONFIG.min_samples
    assert all(a.event_time.timestamp() * 1000 > SHOCK_MS for a in own)


def test_the_shortage_takes_the_range_coverage_out_of_its_band(runs: tuple[Run, Run]) -> None:
    """Deliveries take longer than the range allows: m1's coverage alert fires (below the
    band) after the shock, and the control run never raises it below."""
    shocked, control = runs
    control_idents = {ident(a) for a in control.alerts}
    own = [a for a in shocked.alerts if a.state == "firing" and ident(a) not in control_idents]

    coverage = [a for a in own if a.kind == "coverage" and a.key == SHOCK_MARKET]
    assert coverage, [ident(a) for a in own]
    first = coverage[0]
    assert SHOCK_MS < first.event_time.timestamp() * 1000 < SHOCK_MS + 8 * 3_600_000
    assert first.feature == "below" and first.value > CONFIG.coverage_tolerance  # off target
    below = [a for a in control.alerts if a.kind == "coverage" and a.feature == "below"]
    assert not [a for a in below if a.key == SHOCK_MARKET]  # (it may run wide: "above")
