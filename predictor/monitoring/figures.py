"""The report's pictures, drawn from plain frames and summaries into PNG bytes.

Matplotlib's object API on the Agg canvas (no pyplot, no global state), so figures can be drawn
in any thread and nothing opens a window. Every figure says so in words when it has no data,
rather than coming out blank.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from matplotlib.figure import Figure

from predictor.monitoring.importance import Importance, moves
from predictor.monitoring.messages import ModelDrift
from predictor.monitoring.paired import compare

__all__ = [
    "BACKLOG_AGE_S",
    "champion_vs_challenger",
    "error_distribution",
    "feature_importance",
    "latency_histogram",
    "mae_by_market_hour",
    "predicted_vs_actual",
    "psi_per_feature",
    "range_coverage",
    "split_latency",
]

_SIZE = (9.0, 4.2)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _empty(fig: Figure, title: str, why: str) -> bytes:
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


MIN_BUCKETS = 3
"""Fewer time buckets with data than this make no trend: the panel says so in words."""
_BUCKETS = (
    ("1m", 60),
    ("2m", 120),
    ("5m", 300),
    ("10m", 600),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("2h", 7200),
    ("6h", 21600),
    ("1d", 86400),
)
_MAX_BUCKETS = 48


def bucket_for(frame: pl.DataFrame, column: str) -> tuple[str, int]:
    """The time bucket (polars ``every``, seconds) for ``column``'s span: the smallest of
    ``_BUCKETS`` that cuts it in at most ``_MAX_BUCKETS``, so a ten-minute demo gets minutes
    and a month gets days.

    >>> from datetime import datetime, timedelta
    >>> t = datetime(2026, 1, 1)
    >>> bucket_for(pl.DataFrame({"at": [t, t + timedelta(minutes=12)]}), "at")
    ('1m', 60)
    >>> bucket_for(pl.DataFrame({"at": [t, t + timedelta(days=2)]}), "at")
    ('1h', 3600)
    """
    ms = frame[column].dt.epoch("ms")
    span_s = (int(ms.max()) - int(ms.min())) / 1000  # type: ignore[arg-type]  # polars types max() as any scalar; an int column's is an int
    for every, seconds in _BUCKETS:
        if span_s <= seconds * _MAX_BUCKETS:
            return every, seconds
    return _BUCKETS[-1]


def _too_little(joined: pl.DataFrame, column: str, buckets: int, every: str) -> str:
    ms = joined[column].dt.epoch("ms")
    span_min = (int(ms.max()) - int(ms.min())) / 60_000  # type: ignore[arg-type]  # as above
    return (
        f"too little data for a trend: {joined.height:,} joined deliveries over "
        f"{span_min:.0f} min fill {buckets} {every} bucket(s), fewer than {MIN_BUCKETS}"
    )


def predicted_vs_actual(joined: pl.DataFrame) -> bytes:
    """Mean predicted and actual minutes per time bucket of the delivery, and the count."""
    fig = Figure(figsize=_SIZE)
    title = "Predicted vs actual over time"
    if joined.is_empty():
        return _empty(fig, title, "no joined predictions recorded")
    every, seconds = bucket_for(joined, "delivered_at")
    series = (
        joined.sort("delivered_at")
        .group_by_dynamic("delivered_at", every=every)
        .agg(
            (pl.col("predicted_duration_s").mean() / 60).alias("predicted"),
            (pl.col("actual_duration_s").mean() / 60).alias("actual"),
            pl.len().alias("n"),
        )
    )
    if series.height < MIN_BUCKETS:
        return _empty(fig, title, _too_little(joined, "delivered_at", series.height, every))
    ax = fig.add_subplot()
    times = series["delivered_at"].to_list()
    ax.plot(times, series["actual"].to_list(), label="actual (mean)", color="#d62728", marker=".")
    ax.plot(
        times, series["predicted"].to_list(), label="predicted (mean)", color="#1f77b4", marker="."
    )
    ax.set_ylabel("minutes from order to delivery")
    ax.set_xlabel(f"delivered at (UTC), {every} buckets")
    ax.set_title(title)
    ax.legend(loc="upper left")
    counts = ax.twinx()
    width_days = seconds / 86400 * 0.8
    counts.bar(
        times, series["n"].to_list(), width=width_days, align="edge", alpha=0.15, color="grey"
    )
    counts.set_ylabel("deliveries per bucket")
    fig.autofmt_xdate()
    return _png(fig)


def range_coverage(joined: pl.DataFrame, target: float, tolerance: float) -> bytes:
    """Per model version and time bucket of the delivery, the share of actual durations inside
    the ETA range (with the alert's band) and the range's mean width, over the pairs whose
    prediction carried a range (a model without one is left out, not counted as missing)."""
    fig = Figure(figsize=(9.0, 6.0))
    title = "ETA range (p10-p90): coverage and width over time"
    column = "predicted_duration_p10_s"
    ranged = (
        joined.filter(pl.col(column).is_not_null()) if column in joined.columns else joined.clear()
    )
    if ranged.is_empty():
        why = "no joined prediction with a range" if joined.height else "no joined predictions"
        return _empty(fig, title, f"{why} recorded")
    every, _seconds = bucket_for(ranged, "delivered_at")
    actual, high = pl.col("actual_duration_s"), pl.col("predicted_duration_p90_s")
    series = (
        ranged.sort("delivered_at")
        .with_columns(
            ((actual >= pl.col(column)) & (actual <= high)).alias("inside"),
            (high - pl.col(column)).alias("width_s"),
            (pl.col("model_name") + ":" + pl.col("model_version")).alias("model"),
        )
        .group_by_dynamic("delivered_at", every=every, group_by="model")
        .agg(pl.col("inside").mean(), (pl.col("width_s").mean() / 60).alias("width_min"))
    )
    cover_ax, width_ax = fig.subplots(2, 1, sharex=True)
    cover_ax.axhspan(target - tolerance, target + tolerance, color="#2ca02c", alpha=0.12)
    cover_ax.axhline(target, color="#2ca02c", linestyle="--", label=f"target {target:.0%}")
    for model in sorted(series["model"].unique().to_list()):
        rows = series.filter(pl.col("model") == model)
        times = rows["delivered_at"].to_list()
        cover_ax.plot(times, rows["inside"].to_list(), marker=".", label=model)
        width_ax.plot(times, rows["width_min"].to_list(), marker=".", label=model)
    cover_ax.set_ylim(0, 1)
    cover_ax.set_ylabel("share inside p10-p90")
    cover_ax.set_title(f"{title} (band: alert outside {target:.0%} ± {tolerance:.0%})")
    cover_ax.legend(loc="lower left", fontsize=8)
    width_ax.set_ylabel("mean width (minutes)")
    width_ax.set_xlabel(f"delivered at (UTC), {every} buckets")
    fig.autofmt_xdate()
    return _png(fig)


def champion_vs_challenger(paired: pl.DataFrame) -> bytes:
    """Per pairing of champion and challenger versions and time bucket of the delivery, both
    versions' MAE on the same orders, and the mean paired difference of their absolute errors
    with its 95 % interval (``paired.compare``, the numbers the promotion guard reads): below
    0, the challenger got closer."""
    fig = Figure(figsize=(9.0, 6.0))
    title = "Champion and challenger on the same orders"
    if paired.is_empty():
        return _empty(fig, title, "no shadow pairs recorded (ETA_SHADOW_STAGE)")
    every, _seconds = bucket_for(paired, "delivered_at")
    mae_ax, diff_ax = fig.subplots(2, 1, sharex=True)
    keys = paired.select("model_name", "champion_version", "challenger_version").unique()
    for name, champion, challenger in sorted(keys.iter_rows()):
        rows = paired.filter(
            (pl.col("model_name") == name)
            & (pl.col("champion_version") == champion)
            & (pl.col("challenger_version") == challenger)
        ).sort("delivered_at")
        buckets = rows.group_by_dynamic("delivered_at", every=every).agg(
            pl.col("champion_duration_s"),
            pl.col("challenger_duration_s"),
            pl.col("actual_duration_s"),
        )
        times, stats = [], []
        for at, mine, theirs, actual in buckets.iter_rows():
            times.append(at)
            stats.append(compare(name, champion, challenger, mine, theirs, actual))
        label = f"{name}:{champion} vs {challenger}"
        mae_ax.plot(
            times,
            [(c.champion_mae_s or 0.0) / 60 for c in stats],
            marker=".",
            label=f"{name}:{champion} (champion)",
        )
        mae_ax.plot(
            times,
            [(c.challenger_mae_s or 0.0) / 60 for c in stats],
            marker=".",
            label=f"{name}:{challenger} (challenger)",
        )
        mean = np.array([c.mean_abs_error_diff_s or 0.0 for c in stats]) / 60
        low = np.array([c.diff_ci_low_s or 0.0 for c in stats]) / 60
        high = np.array([c.diff_ci_high_s or 0.0 for c in stats]) / 60
        diff_ax.plot(times, mean, marker=".", label=label)
        diff_ax.fill_between(times, low, high, alpha=0.2)
    diff_ax.axhline(0, color="black", linewidth=0.8)
    mae_ax.set_ylabel("MAE (minutes)")
    mae_ax.set_title(title)
    mae_ax.legend(loc="upper left", fontsize=8)
    diff_ax.set_ylabel("|challenger err| - |champion err|\n(minutes, 95 % CI)")
    diff_ax.set_xlabel(f"delivered at (UTC), {every} buckets; below 0: the challenger is closer")
    fig.autofmt_xdate()
    return _png(fig)


def feature_importance(importance: Importance, top: int = 12) -> bytes:
    """Each version's share of gain by feature (the ``top`` of any version), side by side."""
    fig = Figure(figsize=(9.0, 7.0))
    title = "Global feature importance (share of LightGBM gain) per model version"
    readable = {k: v for k, v in importance.items() if v}
    if not readable:
        why = "no model version in use" if not importance else "no readable artifact"
        return _empty(fig, title, f"{why} in the registry")
    rows = moves(readable, top)
    labels = [f for f, _ in rows]
    ax = fig.add_subplot()
    height = 0.8 / len(readable)
    for k, version in enumerate(readable):
        y = np.arange(len(labels)) + k * height
        ax.barh(y, [100 * (shares[k] or 0.0) for _, shares in rows], height=height, label=version)
    ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of the version's total gain")
    missing = [k for k, v in importance.items() if not v]
    ax.set_title(title + (f" ({', '.join(missing)}: artifact unreadable)" if missing else ""))
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def error_distribution(joined: pl.DataFrame) -> bytes:
    """Histogram of predicted minus actual, in minutes (the 0.5 % tails cut for scale)."""
    fig = Figure(figsize=_SIZE)
    title = "Error distribution (predicted − actual)"
    if joined.is_empty():
        return _empty(fig, title, "no joined predictions recorded")
    err = ((joined["predicted_duration_s"] - joined["actual_duration_s"]) / 60).to_numpy()
    lo, hi = np.quantile(err, [0.005, 0.995])
    ax = fig.add_subplot()
    ax.hist(np.clip(err, lo, hi), bins=60, color="#1f77b4")
    ax.axvline(0, color="black", linewidth=1)
    ax.axvline(float(np.mean(err)), color="#d62728", linestyle="--", label="bias (mean)")
    ax.set_xlabel("minutes (positive: ETA too long; tails past the 0.5 % quantiles at the edges)")
    ax.set_ylabel("orders")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def mae_by_market_hour(joined: pl.DataFrame) -> bytes:
    """Heat map of the MAE in minutes by market and UTC hour of the order; over less than a
    day of orders, by market and time bucket of the order instead (a short run would fill one
    hour's column)."""
    fig = Figure(figsize=_SIZE)
    title = "MAE by market and hour of day (UTC, minutes)"
    if joined.is_empty():
        return _empty(fig, title, "no joined predictions recorded")
    error = ((pl.col("predicted_duration_s") - pl.col("actual_duration_s")).abs() / 60).alias(
        "abs_min"
    )
    every, seconds = bucket_for(joined, "created_at")
    if seconds >= 3600:
        cells = (
            joined.with_columns(pl.col("created_at").dt.hour().alias("column"), error)
            .group_by("market_id", "column")
            .agg(pl.col("abs_min").mean())
        )
        columns: list[Any] = list(range(24))
        names = [str(h) for h in columns]
        xlabel = "hour of the order (UTC)"
    else:
        cells = (
            joined.with_columns(pl.col("created_at").dt.truncate(every).alias("column"), error)
            .group_by("market_id", "column")
            .agg(pl.col("abs_min").mean())
        )
        columns = sorted(cells["column"].unique().to_list())
        names = [c.strftime("%H:%M") for c in columns]
        xlabel = f"order created at (UTC), {every} buckets (less than a day of orders)"
        title = f"MAE by market and time of the order (UTC, minutes, {every} buckets)"
        if len(columns) < MIN_BUCKETS:
            return _empty(fig, title, _too_little(joined, "created_at", len(columns), every))
    markets = sorted(cells["market_id"].unique().to_list())
    grid = np.full((len(markets), len(columns)), np.nan)
    where = {c: i for i, c in enumerate(columns)}
    for market, column, mae in cells.iter_rows():
        grid[markets.index(market), where[column]] = mae
    ax = fig.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(markets)), markets)
    step = max(1, len(columns) // 12)
    ax.set_xticks(range(0, len(columns), step), names[::step])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="MAE (minutes)")
    return _png(fig)


def psi_per_feature(
    drift: list[ModelDrift], threshold: float, window: str, exempt: frozenset[str] = frozenset()
) -> bytes:
    """PSI of every feature and of the prediction, per model version, over the window drift
    alerts are read on, with the threshold and how much of the window each version covers;
    features exempt from alerts are marked so, and a store or market feature without a PSI
    (too few of them in the window) says how many there were."""
    fig = Figure(figsize=(9.0, 7.0))
    title = f"PSI against the artifact's reference ({window} window, the one drift alerts use)"
    usable = [d for d in drift if d.reference == "artifact"]
    if not usable:
        return _empty(fig, title, "no drift recorded (no predictions, or no readable artifact)")
    ax = fig.add_subplot()
    height = 0.8 / len(usable)
    labels: list[str] = []
    no_psi: dict[str, int] = {}
    for k, d in enumerate(usable):
        values = {f.feature: f.psi or 0.0 for f in d.features}
        values["prediction"] = d.prediction_psi or 0.0
        for f in d.features:
            if f.psi is None and f.entities is not None:
                no_psi[f.feature] = max(no_psi.get(f.feature, 0), f.entities)
        if not labels:
            labels = sorted(values, key=lambda n: (n != "prediction", n))
        y = np.arange(len(labels)) + k * height
        x = [values.get(n, 0.0) for n in labels]
        covered = f"{min(d.covered_s, d.window_s) / 60:.0f} of {d.window_s / 60:.0f} min covered"
        if d.predictions < d.min_samples:
            covered += f"; too few samples for a PSI: {d.predictions} of {d.min_samples}"
        alerting = "" if d.covered_s >= d.window_s else ", not alerted until full"
        ax.barh(
            y, x, height=height, label=f"{d.model_name}:{d.model_version} ({covered}{alerting})"
        )
    shown = []
    for n in labels:
        if n in exempt:
            n = f"{n} (not alerted)"
        elif n in no_psi:
            n = f"{n} (no PSI: {no_psi[n]} in window)"
        shown.append(n)
    ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2, shown, fontsize=7)
    ax.axvline(threshold, color="#d62728", linestyle="--", label=f"alert above {threshold:g}")
    ax.invert_yaxis()
    ax.set_xlabel(
        "PSI (a store or market feature gets one only with enough distinct ones in the window:"
        " one market's value is one state, not a draw per order)",
        fontsize=8,
    )
    note = "" if any(d.with_features for d in usable) else " — predictions only (no features)"
    ax.set_title(title + note)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


BACKLOG_AGE_S = 60.0
"""An order served later than this after its creation came from a backlog (a replay, a
warm-up burst, a worker catching up): its age at serving is not the system's latency."""


def split_latency(joined: pl.DataFrame) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Seconds from created to served: (live orders, orders served from a backlog).

    >>> from datetime import datetime, timedelta
    >>> t = datetime(2026, 1, 1)
    >>> frame = pl.DataFrame({"created_at": [t, t], "served_at": [t + timedelta(seconds=0.02),
    ...                                                            t + timedelta(minutes=40)]})
    >>> split_latency(frame)
    (array([0.02]), array([2400.]))
    """
    latency = (joined["served_at"] - joined["created_at"]).dt.total_milliseconds().to_numpy()
    seconds = latency / 1000.0
    live = seconds <= BACKLOG_AGE_S
    return seconds[live].astype(np.float64), seconds[~live].astype(np.float64)


def latency_histogram(joined: pl.DataFrame) -> bytes:
    """Histogram of serving latency of live orders: created to served, seconds (log).

    Orders served more than ``BACKLOG_AGE_S`` after creation are counted, not drawn: in a
    replay or a demo's warm-up they are most of the joined pairs (those are the orders whose
    deliveries happened while the monitor ran), and their ages would read as latency.
    """
    fig = Figure(figsize=_SIZE)
    title = "Serving latency of live orders (order created → prediction served)"
    if joined.is_empty():
        return _empty(fig, title, "no joined predictions recorded")
    live, backlog = split_latency(joined)
    aside = (
        f"{len(backlog):,} orders served from a backlog left out "
        f"(median age {np.median(backlog) / 60:.0f} min at serving)"
        if len(backlog)
        else ""
    )
    if not len(live):
        return _empty(
            fig,
            title,
            f"no live order among the joined ones:\n{aside}\n"
            "(the worker's eta_stream_end_to_end_latency_seconds has the live latency)",
        )
    seconds = np.maximum(live, 1e-3)
    ax = fig.add_subplot()
    bins = np.geomspace(1e-3, max(float(seconds.max()), 1.0) * 1.1, 50).tolist()
    ax.hist(seconds, bins=bins, color="#2ca02c")
    ax.set_xscale("log")
    for q, style in ((0.5, "-"), (0.99, "--")):
        ax.axvline(
            float(np.quantile(seconds, q)), color="black", linestyle=style, label=f"p{q * 100:g}"
        )
    if aside:
        ax.text(0.01, 0.97, aside, transform=ax.transAxes, va="top", fontsize=9)
    ax.set_xlabel("seconds")
    ax.set_ylabel("predictions")
    ax.set_title(title)
    ax.legend()
    return _png(fig)
