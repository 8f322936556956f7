"""The demo's live terminal dashboard: figures from two successive scrapes, as a rich table.

``figures`` is pure (two scrapes in, named figures out) so it is tested without services; the
rendering only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

from predictor.demo.scrape import Scrape, quantile_between

__all__ = [
    "DriftRule",
    "Figures",
    "Tick",
    "catching_up",
    "drift_text",
    "figures",
    "render",
    "status_line",
]

LATENCY = "eta_stream_end_to_end_latency_seconds"
WINDOW = "15m"
"""The monitor's window the dashboard shows the MAE over (its shortest)."""
_WINDOW_S = {"15m": 900, "1h": 3600, "24h": 86400}
LIVE_LAG = 2000
"""Records the worker may be behind and still count as live: more, and what it consumes is
the backlog (the demo's burn-in, stamped minutes ago), whose end-to-end latency is its age."""


@dataclass(frozen=True)
class DriftRule:
    """How the monitor alerts on drift (its settings): the dashboard shows that window's PSI,
    the threshold beside it, and how much of the window is covered (alerts wait for all of it)."""

    window: str = "24h"
    threshold: float = 0.2
    exempt: frozenset[str] = frozenset()
    min_entities: int = 10
    min_samples: int = 200
    """Fewest values in the window for a PSI (``ETA_MONITOR_PSI_MIN_SAMPLES``)."""


@dataclass
class Tick:
    """What the services' endpoints said at one moment (None: no answer)."""

    at: float
    worker: Scrape | None = None
    monitor: Scrape | None = None
    online_ms: float | None = None
    online_version: str | None = None


@dataclass
class Figures:
    orders: float = 0.0
    orders_per_s: float = 0.0
    events_per_s: float = 0.0
    predictions: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    behind: float | None = None
    """The worker's consumer lag, all partitions (records; None before it reports one)."""
    dead_letters: float = 0.0
    versions: list[str] = field(default_factory=list)
    mae_s: float | None = None
    mae_by_model: dict[str, float] = field(default_factory=dict)
    psi_max: float | None = None
    """The prediction's PSI over the drift rule's window, for the version being served (or,
    while it has too few predictions there for a PSI, the version with the most)."""
    drift_model: str | None = None
    """The version the drift figures are of."""
    drift_samples: float | None = None
    """Its predictions in the window."""
    feature_psi: tuple[str, float] | None = None
    """The feature with the highest PSI there (exempt features left out), and its PSI."""
    features_over: int = 0
    """Features above the threshold there (exempt ones left out)."""
    covered_s: float | None = None
    alerts: float = 0.0
    drift_alerts: float = 0.0
    """Of ``alerts``, those on a PSI."""
    monitored: float = 0.0
    """Prediction records the monitor has consumed: the final drift figures wait for it to
    catch up with ``predictions`` (a monitor still in the warm-up shows its figures)."""


def _rate(prev: Scrape | None, cur: Scrape | None, dt: float, name: str, **labels: str) -> float:
    if prev is None or cur is None or dt <= 0:
        return 0.0
    return max(cur.total(name, **labels) - prev.total(name, **labels), 0.0) / dt


def figures(
    prev: Tick,
    cur: Tick,
    orders_topic: str,
    drift: DriftRule | None = None,
    predictions_topic: str = "delivery-eta-predictions",
) -> Figures:
    """The dashboard's numbers for the interval between ``prev`` and ``cur``; drift as the
    monitor alerts on it (``drift``: its window and threshold).

    >>> from predictor.demo.scrape import parse_metrics
    >>> a = parse_metrics('eta_stream_events_total{topic="orders"} 10\\n')
    >>> b = parse_metrics('eta_stream_events_total{topic="orders"} 30\\n')
    >>> figures(Tick(0.0, a), Tick(2.0, b), "orders").orders_per_s
    10.0
    """
    dt = cur.at - prev.at
    out = Figures()
    w = cur.worker
    if w is not None:
        out.orders = w.total("eta_stream_events_total", topic=orders_topic)
        out.orders_per_s = _rate(prev.worker, w, dt, "eta_stream_events_total", topic=orders_topic)
        out.events_per_s = _rate(prev.worker, w, dt, "eta_stream_events_total")
        out.predictions = w.total("eta_stream_predictions_total")
        out.dead_letters = w.total("eta_stream_dead_letters_total")
        out.versions = w.label_values("eta_stream_model_info", "version")
        if w.label_values("eta_stream_consumer_lag", "partition"):
            out.behind = w.total("eta_stream_consumer_lag")
        if prev.worker is not None and not catching_up(out):
            before, after = prev.worker.buckets(LATENCY), w.buckets(LATENCY)
            p50 = quantile_between(before, after, 0.5)
            p99 = quantile_between(before, after, 0.99)
            out.p50_ms = None if p50 is None else p50 * 1000
            out.p99_ms = None if p99 is None else p99 * 1000
    m = cur.monitor
    if m is not None:
        for (name, labels), value in m.values.items():
            if name != "eta_monitor_mae_seconds" or dict(labels).get("window") != WINDOW:
                continue
            scope, key = dict(labels).get("scope"), dict(labels).get("key", "")
            if scope == "all":
                out.mae_s = value
            elif scope == "model":
                out.mae_by_model[key] = value
        _drift(out, m, drift or DriftRule())
        out.alerts = m.total("eta_monitor_alerts_total")
        out.monitored = m.total("eta_monitor_records_total", topic=predictions_topic)
        out.drift_alerts = m.total("eta_monitor_alerts_total", kind="psi")
    return out


def _drift(out: Figures, m: Scrape, rule: DriftRule) -> None:
    """PSI and coverage of the served version over the rule's window (the one that alerts);
    while the served version has too few predictions there for a PSI (just promoted), the
    version with the most predictions in the window, which the monitor still judges."""
    covered: dict[str, float] = {}
    samples: dict[str, float] = {}
    psi: dict[str, dict[str, float]] = {}
    for (name, labels), value in m.values.items():
        ls = dict(labels)
        if ls.get("window") != rule.window:
            continue
        if name == "eta_monitor_drift_covered_seconds":
            covered[ls["model"]] = value
        elif name == "eta_monitor_psi":
            psi.setdefault(ls["model"], {})[ls["feature"]] = value
        elif name == "eta_monitor_psi_samples" and ls.get("feature") == "prediction":
            samples[ls["model"]] = value
    if not covered:
        return
    served = [k for k in covered if k.rsplit(":", 1)[-1] in out.versions]
    model = served[0] if served else max(covered, key=lambda k: covered[k])
    if samples.get(model, 0.0) < rule.min_samples and samples:
        most = max(samples, key=lambda k: samples[k])
        model = most if samples[most] >= rule.min_samples else model
    out.drift_model, out.drift_samples = model, samples.get(model)
    out.covered_s = covered.get(model, 0.0)
    values = psi.get(model, {})
    out.psi_max = values.get("prediction")
    features = {k: v for k, v in values.items() if k != "prediction" and k not in rule.exempt}
    if features:
        top = max(features, key=lambda k: features[k])
        out.feature_psi = (top, features[top])
    out.features_over = sum(v > rule.threshold for v in features.values())


def catching_up(f: Figures) -> bool:
    """Whether the worker is draining a backlog rather than serving live traffic: its latency
    then says how old the backlog is, not how fast it serves, and is not shown.

    >>> [catching_up(Figures(behind=n)) for n in (5000.0, 12.0, None)]
    [True, False, False]
    """
    return f.behind is not None and f.behind > LIVE_LAG


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


def _latency(f: Figures) -> str:
    if catching_up(f):
        return f"— (catching up on the warm-up backlog, {f.behind:,.0f} records behind)"
    return f"{_ms(f.p50_ms)} / {_ms(f.p99_ms)}"


def drift_text(f: Figures, rule: DriftRule) -> str:
    """The drift figures as the monitor alerts on them: window, coverage, threshold.

    >>> rule = DriftRule(window="1h", threshold=0.2)
    >>> drift_text(Figures(psi_max=0.05, feature_psi=("store__x", 0.12), covered_s=1800), rule)
    'prediction 0.050, top feature store__x 0.120 (alert > 0.2; 30 of 60 min covered)'
    >>> drift_text(Figures(covered_s=60, drift_model="eta:2", drift_samples=45), rule)
    'eta:2 too few samples (45 of 200) (alert > 0.2; 1 of 60 min covered)'
    """
    if f.covered_s is None:
        return f"— (alert > {rule.threshold:g} over {rule.window})"
    top = ""
    if f.feature_psi is not None:
        top = f", top feature {f.feature_psi[0]} {f.feature_psi[1]:.3f}"
    over = f", {f.features_over} over" if f.features_over else ""
    which = "" if f.drift_model is None else f"{f.drift_model} "
    if f.drift_samples is not None and f.drift_samples < rule.min_samples:
        shown = f"{which}too few samples ({f.drift_samples:,.0f} of {rule.min_samples})"
    else:
        shown = f"{which}prediction {_psi(f.psi_max)}{top}{over}"
    return (
        f"{shown} (alert > {rule.threshold:g}; "
        f"{min(f.covered_s, _WINDOW_S[rule.window]) / 60:.0f} of {_WINDOW_S[rule.window] / 60:.0f}"
        " min covered)"
    )


def render(f: Figures, cur: Tick, phase: str, note: str, drift: DriftRule | None = None) -> Table:
    """The dashboard as one table."""
    rule = drift or DriftRule()
    table = Table(title=f"etastream demo — {phase}", title_justify="left", min_width=64)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("orders consumed", f"{f.orders:,.0f}  ({f.orders_per_s:,.0f}/s)")
    table.add_row("events/s (all topics)", f"{f.events_per_s:,.0f}")
    table.add_row("predictions produced", f"{f.predictions:,.0f}")
    table.add_row("end-to-end latency p50 / p99 (live)", _latency(f))
    table.add_row("model version (stream)", ", ".join(f.versions) or "—")
    online = "—" if cur.online_ms is None else f"{cur.online_ms:.1f} ms, v{cur.online_version}"
    table.add_row("online POST /v1/predictions", online)
    mae = "—" if f.mae_s is None else f"{f.mae_s:,.0f} s"
    if f.mae_by_model:
        mae += "  (" + ", ".join(f"{k} {v:,.0f} s" for k, v in sorted(f.mae_by_model.items())) + ")"
    table.add_row(f"rolling MAE, {WINDOW} (monitor)", mae)
    table.add_row(f"PSI over {rule.window}, the alert window", drift_text(f, rule))
    table.add_row("alerts raised (monitor)", f"{f.alerts:.0f}")
    table.add_row("dead letters", f"{f.dead_letters:,.0f}")
    table.caption = (
        f"{note + chr(10) if note else ''}PSI of a store or market feature only over ≥ "
        f"{rule.min_entities} store/market-hours and ≥ {rule.min_samples} values in the "
        "window (one market's value in an hour "
        "is one state, not a draw per order); calendar features are not alerted on"
    )
    return table


def status_line(
    f: Figures, cur: Tick, elapsed_s: float, phase: str, drift: DriftRule | None = None
) -> str:
    """The dashboard in one line, for output that is not a terminal (a log, a pipe, CI).

    >>> from predictor.demo.scrape import parse_metrics
    >>> tick = Tick(0.0, parse_metrics(""), parse_metrics(""), 4.2, "1")
    >>> line = status_line(Figures(orders=120, orders_per_s=6, predictions=118, p50_ms=17.5,
    ...                    p99_ms=24.9, versions=["1"]), tick, 21.0, "live traffic 21/60 s")
    >>> print(line.replace(", ", ",\\n"))
    [21 s] live traffic 21/60 s: orders 120 (6/s),
    predictions 118,
    latency p50/p99 17.5 ms / 24.9 ms,
    model 1,
    online 4.2 ms,
    MAE —,
    PSI — (alert > 0.2 over 24h) / 0 alerts,
    dead letters 0
    """
    rule = drift or DriftRule()
    online = "—" if cur.online_ms is None else f"{cur.online_ms:.1f} ms"
    mae = "—" if f.mae_s is None else f"{f.mae_s:,.0f} s"
    return (
        f"[{elapsed_s:.0f} s] {phase}: orders {f.orders:,.0f} ({f.orders_per_s:,.0f}/s), "
        f"predictions {f.predictions:,.0f}, latency p50/p99 {_latency(f)}, "
        f"model {', '.join(f.versions) or '—'}, online {online}, MAE {mae}, "
        f"PSI {drift_text(f, rule)} / {f.alerts:.0f} alerts, "
        f"dead letters {f.dead_letters:,.0f}"
    )


def _psi(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
