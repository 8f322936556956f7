"""The monitor's core: joined pairs and predictions in, summaries and alerts out, no I/O.

The Kafka/Redis loop (``service``) decodes, joins and hands the results here; everything that
decides (rolling windows, PSI, thresholds) is in this module and the ones it composes, so unit
tests drive it with plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from predictor.monitoring.accuracy import ErrorWindows
from predictor.monitoring.alerts import AlertBook, Observation
from predictor.monitoring.drift import DriftWindows, ReferenceLoader
from predictor.monitoring.join import Joined, PairedJoined
from predictor.monitoring.messages import ErrorStats, ModelDrift, MonitorAlert, MonitorSummary
from predictor.monitoring.paired import PairedWindows
from predictor.monitoring.rolling import WINDOWS
from stream_features.contract import DeliveryPrediction

__all__ = [
    "Monitor",
    "MonitorConfig",
    "coverage_observations",
    "drift_observations",
    "error_observations",
]


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds and the window they are read over (plain values from ``Settings``)."""

    mae_alert_s: float = 900.0
    psi_alert: float = 0.2
    missing_share_alert: float = 0.2
    no_state_share_alert: float = 0.5
    freshness_alert_s: float = 6 * 3600.0
    min_samples: int = 100
    coverage_target: float = 0.8
    """Share of actual durations the p10-p90 range claims to hold."""
    coverage_tolerance: float = 0.05
    """Coverage further than this from the target (either side) raises an alert."""
    coverage_min_samples: int = 200
    """Fewest ranged pairs behind a coverage for it to start an alert: a share read over 100
    pairs has a standard error of 4 points at 80 %, close to the tolerance."""
    psi_min_entities: int = 10
    """Fewest states (store or market × hour) behind such a feature for its PSI."""
    psi_min_samples: int = 200
    """Fewest values of a column (the prediction, a feature) in the window for its PSI."""
    drift_settle_s: float = 3600.0
    """Event time after the first prediction seen that judged drift windows leave out."""
    error_window: str = "1h"
    drift_window: str = "24h"
    psi_exempt: frozenset[str] = frozenset({"order__hour_of_day", "order__day_of_week"})
    """Features whose PSI is reported but never alerted on (see ``docs/monitoring.md``)."""

    def __post_init__(self) -> None:
        for name in ("error_window", "drift_window"):
            if getattr(self, name) not in WINDOWS:
                raise ValueError(f"{name} must be one of {', '.join(WINDOWS)}")
        if not 0 < self.coverage_target < 1 or self.coverage_tolerance <= 0:
            raise ValueError("coverage_target must be in (0, 1) and coverage_tolerance > 0")


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def error_observations(stats: Sequence[ErrorStats], config: MonitorConfig) -> list[Observation]:
    """The MAE of every group as a watched value."""
    return [
        Observation("mae", s.scope, s.key, None, s.mae_s, config.mae_alert_s, s.count)
        for s in stats
        if s.mae_s is not None
    ]


def coverage_observations(stats: Sequence[ErrorStats], config: MonitorConfig) -> list[Observation]:
    """The range coverage of every group as a watched value: its distance from the target
    against the tolerance, so the one-sided ``AlertBook`` (and its hysteresis) watches a band.
    The side it left by is the observation's ``feature`` ("below" or "above"), so a coverage
    that swings across the band resolves one alert and raises the other.

    >>> s = ErrorStats(scope="market", key="m1", count=300, range_samples=250,
    ...                range_coverage=0.62)
    >>> (o,) = coverage_observations([s], MonitorConfig())
    >>> o.feature, round(o.value, 3), o.threshold, o.samples
    ('below', 0.18, 0.05, 250)
    """
    target = config.coverage_target
    return [
        Observation(
            "coverage",
            s.scope,
            s.key,
            "below" if s.range_coverage < target else "above",
            abs(s.range_coverage - target),
            config.coverage_tolerance,
            s.range_samples,
        )
        for s in stats
        if s.range_coverage is not None
    ]


def drift_observations(drift: Sequence[ModelDrift], config: MonitorConfig) -> list[Observation]:
    """PSI of the prediction and of each feature, excess missing share, no-state share and
    p90 freshness of every model version as watched values.

    A version is judged only once its window is full (``covered_s``): a window shorter than
    a day compared with a reference taken over whole days differs by the daily cycle alone.
    """
    out: list[Observation] = []
    for d in drift:
        if d.covered_s < d.window_s:
            continue
        key = f"{d.model_name}:{d.model_version}"
        if d.prediction_psi is not None:
            out.append(
                Observation(
                    "psi",
                    "model",
                    key,
                    "prediction",
                    d.prediction_psi,
                    config.psi_alert,
                    d.predictions,
                )
            )
        for f in d.features:
            if f.psi is not None and f.feature not in config.psi_exempt:
                out.append(
                    Observation(
                        "psi", "model", key, f.feature, f.psi, config.psi_alert, d.with_features
                    )
                )
            if f.missing_share is not None:
                excess = f.missing_share - f.reference_missing_share
                out.append(
                    Observation(
                        "missing_share",
                        "model",
                        key,
                        f.feature,
                        excess,
                        config.missing_share_alert,
                        d.with_features,
                    )
                )
        if d.no_state_share is not None:
            out.append(
                Observation(
                    "no_state_share",
                    "model",
                    key,
                    None,
                    d.no_state_share,
                    config.no_state_share_alert,
                    d.predictions,
                )
            )
        if d.freshness_p90_s is not None:
            out.append(
                Observation(
                    "freshness",
                    "model",
                    key,
                    None,
                    d.freshness_p90_s,
                    config.freshness_alert_s,
                    d.predictions,
                )
            )
    return out


class Monitor:
    """Rolling error (with the ETA range's coverage) and drift state with its alerts.

    Call ``add_predictions`` and ``add_joined`` per batch, then ``alerts`` (cheap: the alert
    window only); ``summaries`` reads all three windows for a publish.
    """

    def __init__(self, config: MonitorConfig, references: ReferenceLoader) -> None:
        self.config = config
        self.errors = ErrorWindows()
        self.drift = DriftWindows(
            references, config.psi_min_entities, config.psi_min_samples, config.drift_settle_s
        )
        self.paired = PairedWindows()
        self._error_alerts = AlertBook(config.min_samples)
        self._coverage_alerts = AlertBook(config.coverage_min_samples)
        self._drift_alerts = AlertBook(config.min_samples)
        self.totals: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add to a counter reported in every summary (records, rejected, duplicates...)."""
        if n:
            self.totals[name] = self.totals.get(name, 0) + n

    def add_predictions(self, preds: Sequence[DeliveryPrediction]) -> None:
        if preds:
            self.drift.add(preds)
            self.count("predictions", len(preds))

    def add_joined(self, pairs: Sequence[Joined]) -> None:
        if pairs:
            self.errors.add(pairs)
            self.count("joined", len(pairs))

    def add_paired(self, pairs: Sequence[PairedJoined]) -> None:
        """Shadow records joined with their deliveries: champion and challenger compared."""
        if pairs:
            self.paired.add(pairs)
            self.count("shadow_joined", len(pairs))

    def alerts(self, now: datetime) -> list[MonitorAlert]:
        """Alerts for every crossing since the last call: errors and range coverage read over
        ``error_window``, drift over ``drift_window``."""
        out: list[MonitorAlert] = []
        errors_until = _when(self.errors.until_ms)
        if errors_until is not None:
            window = self.config.error_window
            stats = list(self.errors.stats(window).values())
            out += self._error_alerts.update(
                error_observations(stats, self.config), window, errors_until, now
            )
            out += self._coverage_alerts.update(
                coverage_observations(stats, self.config), window, errors_until, now
            )
        drift_until = _when(self.drift.until_ms)
        if drift_until is not None:
            window = self.config.drift_window
            out += self._drift_alerts.update(
                drift_observations(self.drift.summaries(window), self.config),
                window,
                drift_until,
                now,
            )
        self.count("alerts", sum(a.state == "firing" for a in out))
        return out

    def summaries(self, now: datetime) -> list[MonitorSummary]:
        """One summary per window (15m, 1h, 24h)."""
        totals = {
            **self.totals,
            "late_deliveries": self.errors.late,
            "late_predictions": self.drift.late,
        }
        return [
            MonitorSummary(
                window=window,
                window_s=seconds,
                published_at=now,
                errors_until=_when(self.errors.until_ms),
                drift_until=_when(self.drift.until_ms),
                errors=sorted(self.errors.stats(window).values(), key=lambda s: (s.scope, s.key)),
                drift=self.drift.summaries(window),
                totals=totals,
                shadow=self.paired.stats(window),
            )
            for window, seconds in WINDOWS.items()
        ]
