"""``eta report``: one self-contained HTML page from what the monitor recorded.

Input: the joined pairs under ``<data_dir>/monitor/joined/``, the latest summaries in
``summaries.json`` (see ``recording``) and, for the feature importance, the artifacts of the
versions in use (``importance``). Output: ``report.html`` with every figure embedded as a
base64 PNG, so the file can be mailed or opened offline; nothing is fetched when it opens.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from predictor.models.artifact import atomic_write
from predictor.monitoring import figures
from predictor.monitoring.importance import Importance, moves
from predictor.monitoring.messages import ALL_MARKETS, ErrorStats, ModelDrift, MonitorSummary
from predictor.monitoring.recording import paired_frame

__all__ = ["FIGURES", "Figure", "render_report", "write_report"]


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    png: bytes


FIGURES = (
    "predicted_vs_actual",
    "error_distribution",
    "mae_by_market_hour",
    "psi_per_feature",
    "range_coverage",
    "champion_vs_challenger",
    "feature_importance",
    "latency_histogram",
)
"""Every figure the report holds, in page order (tests check each is there)."""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
figure { margin: 2em 0; } figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:,.0f}{unit}"


def _errors_table(summaries: Sequence[MonitorSummary]) -> str:
    rows: list[str] = []
    for s in summaries:
        for e in sorted(s.errors, key=lambda e: ({"all": 0, "model": 1}.get(e.scope, 2), e.key)):
            rows.append(_error_row(s.window, e))
    if not rows:
        return "<p>No summaries recorded yet.</p>"
    head = (
        "<tr><th class=l>window</th><th class=l>scope</th><th class=l>key</th><th>pairs</th>"
        "<th>MAE (s)</th><th>bias (s)</th><th>p90 |error| (s)</th><th>with a range</th>"
        "<th>range coverage</th><th>range width (s)</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _error_row(window: str, e: ErrorStats) -> str:
    coverage = "—" if e.range_coverage is None else f"{e.range_coverage:.1%}"
    return (
        f"<tr><td class=l>{window}</td><td class=l>{e.scope}</td><td class=l>"
        f"{html.escape(e.key)}</td><td>{e.count}</td><td>{_fmt(e.mae_s)}</td>"
        f"<td>{_fmt(e.bias_s)}</td><td>{_fmt(e.p90_abs_error_s)}</td><td>{e.range_samples}</td>"
        f"<td>{coverage}</td><td>{_fmt(e.range_width_s)}</td></tr>"
    )


def _importance_table(importance: Importance, top: int = 12) -> str:
    """Share of gain per feature in each version in use, and its move from the version before
    (percentage points): what a retrained model leans on more, or less, than its predecessor."""
    if not importance:
        return "<p>No model version in use recorded.</p>"
    versions = list(importance)
    head = "<tr><th class=l>feature</th>" + "".join(
        f"<th>{html.escape(v)}</th>"
        + (f"<th>Δ vs {html.escape(versions[i - 1])}</th>" if i else "")
        for i, v in enumerate(versions)
    )
    rows = []
    for feature, shares in moves(importance, top):
        cells = []
        for i, share in enumerate(shares):
            cells.append("—" if share is None else f"{share:.1%}")
            if i:
                before = shares[i - 1]
                moved = None if share is None or before is None else 100 * (share - before)
                cells.append("—" if moved is None else f"{moved:+.1f} pp")
        rows.append(
            f"<tr><td class=l>{html.escape(feature)}</td>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    missing = [v for v, shares in importance.items() if shares is None]
    note = (
        f"<p class=meta>No artifact readable in the registry for {html.escape(', '.join(missing))}"
        ".</p>"
        if missing
        else ""
    )
    return f"<table>{head}</tr>{''.join(rows)}</table>{note}"


def _shadow_table(summaries: Sequence[MonitorSummary]) -> str:
    """Champion and challenger side by side on the same orders, per window (the shadow)."""
    rows = []
    for s in summaries:
        for c in s.shadow:
            ci = (
                "—"
                if c.diff_ci_low_s is None or c.diff_ci_high_s is None
                else f"[{c.diff_ci_low_s:+,.0f}, {c.diff_ci_high_s:+,.0f}]"
            )
            diff = "—" if c.mean_abs_error_diff_s is None else f"{c.mean_abs_error_diff_s:+,.0f}"
            p = "—" if c.sign_test_p is None else f"{c.sign_test_p:.3g}"
            market = "all" if c.market_id == ALL_MARKETS else html.escape(c.market_id)
            cells = [
                f"{_fmt(c.champion_mae_s)} / {_fmt(c.challenger_mae_s)}",
                f"{_fmt(c.champion_bias_s)} / {_fmt(c.challenger_bias_s)}",
                f"{_fmt(c.champion_p90_abs_error_s)} / {_fmt(c.challenger_p90_abs_error_s)}",
                diff,
                ci,
                f"{c.challenger_better} / {c.challenger_worse}",
                p,
            ]
            rows.append(
                f"<tr><td class=l>{s.window}</td><td class=l>{html.escape(c.model_name)}:"
                f"{html.escape(c.champion_version)} vs {html.escape(c.challenger_version)}</td>"
                f"<td class=l>{market}</td><td>{c.orders}</td>"
                + "".join(f"<td>{cell}</td>" for cell in cells)
                + "</tr>"
            )
    if not rows:
        return "<p>No shadow (ETA_SHADOW_STAGE) recorded.</p>"
    head = (
        "<tr><th class=l>window</th><th class=l>champion vs challenger</th>"
        "<th class=l>market</th><th>orders</th>"
        "<th>MAE (s)</th><th>bias (s)</th><th>p90 |error| (s)</th><th>Δ|error| (s)</th>"
        "<th>95% CI</th><th>challenger closer / farther</th><th>sign test p</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _drift_table(
    drift: Sequence[ModelDrift], window: str, threshold: float, exempt: frozenset[str]
) -> str:
    """Per model version, the drift figures alerts are read on: window, coverage, threshold."""
    if not drift:
        return "<p>No drift recorded yet.</p>"
    head = (
        "<tr><th class=l>model</th><th class=l>window</th><th>covered (min)</th>"
        "<th>alert above</th><th>prediction PSI</th><th class=l>highest feature PSI</th>"
        "<th>features above</th><th class=l>no PSI (too few samples, or stores/markets)</th>"
        "</tr>"
    )
    rows = []
    for d in drift:
        watched = [f for f in d.features if f.psi is not None and f.feature not in exempt]
        top = max(watched, key=lambda f: f.psi or 0.0, default=None)
        over = sum((f.psi or 0.0) > threshold for f in watched)
        few = d.predictions < d.min_samples
        skipped = ", ".join(
            f"{f.feature} ({f.entities})" for f in d.features if f.psi is None and f.entities
        )
        if few:  # every column has fewer values than predictions
            skipped = f"all: too few samples ({d.predictions:,} of {d.min_samples:,})"
        pred = "—" if d.prediction_psi is None else f"{d.prediction_psi:.3f}"
        if few:
            pred = "too few samples"
        rows.append(
            f"<tr><td class=l>{html.escape(d.model_name)}:{html.escape(d.model_version)}</td>"
            f"<td class=l>{window}</td><td>{min(d.covered_s, d.window_s) / 60:,.0f} of "
            f"{d.window_s / 60:,.0f}</td><td>{threshold:g}</td><td>{pred}</td><td class=l>"
            f"{'—' if top is None else f'{html.escape(top.feature)} {top.psi:.3f}'}</td>"
            f"<td>{over}</td><td class=l>{html.escape(skipped) or '—'}</td></tr>"
        )
    note = (
        "<p class=meta>Drift alerts are read over this window once it is full; calendar "
        "features are not alerted on; a PSI is computed only over enough values "
        "(<code>ETA_MONITOR_PSI_MIN_SAMPLES</code>), and for a store or market feature only "
        "when the window holds enough distinct ones (<code>ETA_MONITOR_PSI_MIN_ENTITIES</code>); "
        "the window is covered from <code>ETA_MONITOR_DRIFT_SETTLE_S</code> after the first "
        "prediction on (a stream's first windows are still filling).</p>"
    )
    return f"<table>{head}{''.join(rows)}</table>{note}"


def render_report(
    joined: pl.DataFrame,
    summaries: Sequence[MonitorSummary],
    *,
    psi_threshold: float,
    drift_window: str = "24h",
    psi_exempt: frozenset[str] = frozenset(),
    coverage_target: float = 0.8,
    coverage_tolerance: float = 0.05,
    importance: Importance | None = None,
    paired: pl.DataFrame | None = None,
    now: datetime | None = None,
) -> tuple[str, list[Figure]]:
    """The HTML page and its figures (also embedded in the page); ``importance`` is each
    version in use's gain shares (``importance.importance_by_version``), none when omitted;
    ``paired`` the recorded shadow pairs (``recording.read_paired``), none when omitted."""
    importance = importance or {}
    paired = paired if paired is not None else paired_frame([])
    now = now or datetime.now(UTC)
    by_window: dict[str, MonitorSummary] = {s.window: s for s in summaries}
    drift_summary = by_window.get(drift_window) or (summaries[-1] if summaries else None)
    drift = drift_summary.drift if drift_summary else []
    shown_window = drift_summary.window if drift_summary else drift_window
    makers: dict[str, tuple[str, Callable[[], bytes]]] = {
        "predicted_vs_actual": (
            "Predicted vs actual over time",
            lambda: figures.predicted_vs_actual(joined),
        ),
        "error_distribution": ("Error distribution", lambda: figures.error_distribution(joined)),
        "mae_by_market_hour": (
            "MAE by market and hour",
            lambda: figures.mae_by_market_hour(joined),
        ),
        "psi_per_feature": (
            "PSI per feature",
            lambda: figures.psi_per_feature(drift, psi_threshold, shown_window, psi_exempt),
        ),
        "range_coverage": (
            "ETA range coverage and width per model version",
            lambda: figures.range_coverage(joined, coverage_target, coverage_tolerance),
        ),
        "champion_vs_challenger": (
            "Champion and challenger on the same orders",
            lambda: figures.champion_vs_challenger(paired),
        ),
        "feature_importance": (
            "Feature importance per model version",
            lambda: figures.feature_importance(importance),
        ),
        "latency_histogram": ("Serving latency", lambda: figures.latency_histogram(joined)),
    }
    made = [Figure(key, title, make()) for key, (title, make) in makers.items()]
    span = "no joined pairs"
    if not joined.is_empty():
        times = joined["delivered_at"].sort()
        first, last = times[0], times[-1]
        span = (
            f"{joined.height:,} joined pairs delivered "
            f"{first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC"
        )
    body = [
        "<h1>etastream model report</h1>",
        f"<p class=meta>generated {now:%Y-%m-%d %H:%M} UTC · {html.escape(span)}</p>",
        "<h2>Rolling error</h2>",
        _errors_table(summaries),
        "<h2>Champion and challenger on the same orders</h2>",
        _shadow_table(summaries),
        f"<h2>Drift ({html.escape(shown_window)} window, the one alerts use)</h2>",
        _drift_table(drift, shown_window, psi_threshold, psi_exempt),
        "<h2>Feature importance (share of LightGBM gain) by model version</h2>",
        _importance_table(importance),
    ]
    for fig in made:
        data = base64.b64encode(fig.png).decode("ascii")
        body.append(
            f'<figure id="{fig.key}"><img alt="{html.escape(fig.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(fig.title)}'
            "</figcaption></figure>"
        )
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>etastream model report</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    return page, made


def write_report(
    out_dir: Path,
    joined: pl.DataFrame,
    summaries: Sequence[MonitorSummary],
    *,
    psi_threshold: float,
    drift_window: str = "24h",
    psi_exempt: frozenset[str] = frozenset(),
    coverage_target: float = 0.8,
    coverage_tolerance: float = 0.05,
    importance: Importance | None = None,
    paired: pl.DataFrame | None = None,
    name: str = "report.html",
) -> Path:
    """Write the report as ``name`` into ``out_dir`` (created) and return its path."""
    page, _ = render_report(
        joined,
        summaries,
        psi_threshold=psi_threshold,
        drift_window=drift_window,
        psi_exempt=psi_exempt,
        coverage_target=coverage_target,
        coverage_tolerance=coverage_tolerance,
        importance=importance,
        paired=paired,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    atomic_write(path, page.encode("utf-8"))  # a temporary file, then os.replace: a full disk
    return path  # leaves the previous report whole
