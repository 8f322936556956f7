"""Prometheus metrics of the monitor, on a registry of its own (served on its own port).

The gauges mirror the latest summaries: set at each publish, with the label sets of groups
that left the window removed, so a dashboard never shows a market's stale MAE as current.

>>> from datetime import UTC, datetime
>>> from predictor.monitoring.messages import ErrorStats
>>> m, t = MonitorMetrics(), datetime(2026, 1, 1, tzinfo=UTC)
>>> def summary(*keys: str) -> MonitorSummary:
...     errors = [ErrorStats(scope="market", key=k, count=1, mae_s=60.0) for k in keys]
...     return MonitorSummary(window="1h", window_s=3600, published_at=t, errors=errors,
...                           drift=[], totals={})
>>> m.publish([summary("m1", "m2")]); m.publish([summary("m2")])
>>> labels = {"window": "1h", "scope": "market"}
>>> [m.registry.get_sample_value("eta_monitor_mae_seconds", {**labels, "key": k})
...  for k in ("m1", "m2")]
[None, 60.0]

A group without a range (its model has none) shows 0 range samples and no coverage:

>>> [m.registry.get_sample_value(f"eta_monitor_range_{g}", {**labels, "key": "m2"})
...  for g in ("samples", "coverage_ratio")]
[0.0, None]
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from predictor.monitoring.messages import MonitorAlert, MonitorSummary

__all__ = ["MonitorMetrics"]


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ["window", "scope", "key"]
        self.records = Counter("eta_monitor_records", "Records consumed", ["topic"], registry=r)
        self.rejected = Counter(
            "eta_monitor_rejected", "Records dead-lettered, by topic", ["topic"], registry=r
        )
        self.joined = Counter("eta_monitor_joined", "Predictions joined to outcomes", registry=r)
        self.duplicates = Counter(
            "eta_monitor_duplicates", "Redelivered records the join ignored", registry=r
        )
        self.alerts = Counter("eta_monitor_alerts", "Alerts raised (firing)", ["kind"], registry=r)
        self.samples = Gauge(
            "eta_monitor_samples", "Joined pairs in the window", labels, registry=r
        )
        self.mae = Gauge("eta_monitor_mae_seconds", "Mean absolute error", labels, registry=r)
        self.bias = Gauge(
            "eta_monitor_bias_seconds", "Mean of predicted - actual", labels, registry=r
        )
        self.p90 = Gauge(
            "eta_monitor_p90_abs_error_seconds",
            "90th percentile absolute error",
            labels,
            registry=r,
        )
        # the ETA range (p10-p90): over the pairs whose prediction carried one
        self.range_samples = Gauge(
            "eta_monitor_range_samples",
            "Joined pairs in the window whose prediction carried an ETA range",
            labels,
            registry=r,
        )
        self.range_coverage = Gauge(
            "eta_monitor_range_coverage_ratio",
            "Share of those pairs whose actual duration fell inside p10-p90 (meant: 0.8)",
            labels,
            registry=r,
        )
        self.range_width = Gauge(
            "eta_monitor_range_width_seconds",
            "Mean width p90 - p10 of the range",
            labels,
            registry=r,
        )
        drift = ["window", "model", "feature"]
        self.psi = Gauge(
            "eta_monitor_psi", "PSI against the artifact's reference", drift, registry=r
        )
        self.psi_samples = Gauge(
            "eta_monitor_psi_samples",
            "Values behind the PSI in the window; below ETA_MONITOR_PSI_MIN_SAMPLES the PSI is "
            "absent (too few samples)",
            drift,
            registry=r,
        )
        self.missing = Gauge(
            "eta_monitor_missing_share",
            "Share of predictions missing the feature",
            drift,
            registry=r,
        )
        model = ["window", "model"]
        self.no_state = Gauge(
            "eta_monitor_no_state_share",
            "Share of predictions whose store or market had no state (default stream features)",
            model,
            registry=r,
        )
        self.freshness = Gauge(
            "eta_monitor_freshness_p90_seconds", "p90 feature freshness", model, registry=r
        )
        self.covered = Gauge(
            "eta_monitor_drift_covered_seconds",
            "Seconds of event time the drift window holds for the version (alerts wait for all)",
            model,
            registry=r,
        )
        # champion against challenger on the same orders (role: champion or challenger)
        paired = ["window", "model", "champion", "challenger", "market"]  # market "*": all
        self.shadow_orders = Gauge(
            "eta_monitor_shadow_orders",
            "Delivered orders both the champion and the challenger predicted",
            paired,
            registry=r,
        )
        side = [*paired, "role"]
        self.shadow_mae = Gauge(
            "eta_monitor_shadow_mae_seconds", "MAE on the paired orders", side, registry=r
        )
        self.shadow_bias = Gauge(
            "eta_monitor_shadow_bias_seconds", "Bias on the paired orders", side, registry=r
        )
        self.shadow_p90 = Gauge(
            "eta_monitor_shadow_p90_abs_error_seconds",
            "p90 absolute error on the paired orders",
            side,
            registry=r,
        )
        self.shadow_diff = Gauge(
            "eta_monitor_shadow_abs_error_diff_seconds",
            "Mean of |challenger error| - |champion error| (< 0: the challenger is better), "
            "with its 95 % CI (bound: mean, low, high)",
            [*paired, "bound"],
            registry=r,
        )
        self._gauges = [
            self.samples, self.mae, self.bias, self.p90, self.range_samples, self.range_coverage,
            self.range_width, self.psi, self.psi_samples, self.missing, self.no_state,
            self.freshness, self.covered, self.shadow_orders, self.shadow_mae, self.shadow_bias,
            self.shadow_p90, self.shadow_diff,
        ]  # fmt: skip
        self._shown: dict[Gauge, set[tuple[str, ...]]] = {}

    def observe_alerts(self, alerts: Sequence[MonitorAlert]) -> None:
        for alert in alerts:
            if alert.state == "firing":
                self.alerts.labels(alert.kind).inc()

    def publish(self, summaries: Sequence[MonitorSummary]) -> None:
        """Set every gauge from the summaries, then drop the label sets no longer reported
        (removed after the new values are in, so a scrape never sees them missing)."""
        values: dict[Gauge, dict[tuple[str, ...], float]] = {g: {} for g in self._gauges}
        for s in summaries:
            for e in s.errors:
                labels = (s.window, e.scope, e.key)
                values[self.samples][labels] = e.count
                values[self.range_samples][labels] = e.range_samples
                for gauge, value in (
                    (self.mae, e.mae_s),
                    (self.bias, e.bias_s),
                    (self.p90, e.p90_abs_error_s),
                    (self.range_coverage, e.range_coverage),
                    (self.range_width, e.range_width_s),
                ):
                    if value is not None:
                        values[gauge][labels] = value
            for d in s.drift:
                model = f"{d.model_name}:{d.model_version}"
                values[self.covered][(s.window, model)] = d.covered_s
                values[self.psi_samples][(s.window, model, "prediction")] = d.predictions
                if d.prediction_psi is not None:
                    values[self.psi][(s.window, model, "prediction")] = d.prediction_psi
                for f in d.features:
                    if f.samples is not None:
                        values[self.psi_samples][(s.window, model, f.feature)] = f.samples
                    if f.psi is not None:
                        values[self.psi][(s.window, model, f.feature)] = f.psi
                    if f.missing_share is not None:
                        values[self.missing][(s.window, model, f.feature)] = f.missing_share
                if d.no_state_share is not None:
                    values[self.no_state][(s.window, model)] = d.no_state_share
                if d.freshness_p90_s is not None:
                    values[self.freshness][(s.window, model)] = d.freshness_p90_s
            for c in s.shadow:
                pair = (
                    s.window,
                    c.model_name,
                    c.champion_version,
                    c.challenger_version,
                    c.market_id,
                )
                values[self.shadow_orders][pair] = c.orders
                for gauge, champion, challenger in (
                    (self.shadow_mae, c.champion_mae_s, c.challenger_mae_s),
                    (self.shadow_bias, c.champion_bias_s, c.challenger_bias_s),
                    (self.shadow_p90, c.champion_p90_abs_error_s, c.challenger_p90_abs_error_s),
                ):
                    for role, value in (("champion", champion), ("challenger", challenger)):
                        if value is not None:
                            values[gauge][(*pair, role)] = value
                for bound, value in (
                    ("mean", c.mean_abs_error_diff_s),
                    ("low", c.diff_ci_low_s),
                    ("high", c.diff_ci_high_s),
                ):
                    if value is not None:
                        values[self.shadow_diff][(*pair, bound)] = value
        for gauge, by_labels in values.items():
            for label_values, value in by_labels.items():
                gauge.labels(*label_values).set(value)
            for stale in self._shown.get(gauge, set()) - by_labels.keys():
                gauge.remove(*stale)
            self._shown[gauge] = set(by_labels)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose the metrics over HTTP on ``port`` (0 means off)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)
