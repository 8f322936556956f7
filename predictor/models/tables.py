"""Rich tables of the model lifecycle: metrics next to baselines, objectives, stage moves."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from predictor.models.registry import AliasMove

__all__ = [
    "compile_table",
    "history_table",
    "metrics_table",
    "objectives_table",
    "search_table",
]

_ROWS = (
    ("MAE (s)", "mae_s", "{:.1f}"),
    ("RMSE (s)", "rmse_s", "{:.1f}"),
    ("p50 |error| (s)", "p50_abs_error_s", "{:.1f}"),
    ("p90 |error| (s)", "p90_abs_error_s", "{:.1f}"),
    ("within ±10 min", "within_10min", "{:.1%}"),
)


def _table(columns: dict[str, Any], title: str, first: str) -> Table:
    """One column per entry of ``columns`` (label -> Metrics), the best of each row in bold."""
    table = Table(title=title)
    table.add_column(first)
    for label in columns:
        table.add_column(label, justify="right")
    for name, key, fmt in _ROWS:
        values = [m[key] for m in columns.values()]
        best = max(values) if key == "within_10min" else min(values)
        cells = [f"[bold]{fmt.format(v)}[/]" if v == best else fmt.format(v) for v in values]
        table.add_row(name, *cells)
    return table


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """The model and both baselines on the same validation rows."""
    columns = {
        "model": metrics["model"],
        "global median": metrics["global_median"],
        "store median": metrics["store_median"],
    }
    return _table(columns, title, f"validation rows: {metrics['model']['rows']}")


def objectives_table(by_objective: dict[str, dict[str, Any]], trees: dict[str, int]) -> Table:
    """Each objective's validation metrics, with the store-median baseline for scale."""
    first = next(iter(by_objective.values()))
    columns = {f"{name} ({trees[name]} trees)": m["model"] for name, m in by_objective.items()}
    columns["store median"] = first["store_median"]
    return _table(
        columns, "objectives on the same split", f"validation rows: {first['model']['rows']}"
    )


def search_table(
    rows: list[tuple[str, int, float, float, bool]], fitted_rows: int = 0, train_rows: int = 0
) -> Table:
    """The configurations ``eta train`` tried: (label, trees, selection MAE, validation MAE,
    chosen), the chosen one marked; the choice is by the selection MAE (the stopping rows).

    >>> table = search_table([("l1, 31 leaves, lr 0.1", 120, 410.0, 420.0, True),
    ...                       ("l2, 31 leaves, lr 0.1", 40, 450.0, 455.0, False)])
    >>> table.row_count
    2
    """
    title = "candidates on the same split (chosen by MAE on the stopping rows)"
    if fitted_rows and fitted_rows < train_rows:
        title += f";\nfitted on the latest {fitted_rows:,} of {train_rows:,} training rows, "
        title += "the winner then on all"
    table = Table(title=title)
    for column in ("candidate", "trees", "stopping-rows MAE (s)", "validation MAE (s)", ""):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for label, trees, stop_mae, valid_mae, chosen in rows:
        mark = "[bold green]chosen[/]" if chosen else ""
        cells = (label, str(trees), f"{stop_mae:.1f}", f"{valid_mae:.1f}", mark)
        table.add_row(*(f"[bold]{c}[/]" if chosen and i < 4 else c for i, c in enumerate(cells)))
    return table


def history_table(moves: list[AliasMove], title: str) -> Table:
    table = Table(title=title)
    for column in ("at", "who", "stage", "action", "from", "to"):
        table.add_column(column)
    for m in moves:
        table.add_row(m.at[:19], m.who, m.stage, m.action, m.from_version or "—", m.to_version)
    return table


def compile_table(ref: str, info: dict[str, Any], tolerance_s: float) -> Table:
    """What ``eta models compile`` did: how long, from where, and how close to LightGBM.

    >>> info = {"lleaves": "1.3.0", "parity_max_abs_diff_s": 3.6e-9, "parity_rows": 2000,
    ...         "compile_s": 2.41, "waited_s": 0.0, "cache": "m/compiled/x.bin",
    ...         "cache_hit": False}
    >>> table = compile_table("eta:2", info, 1e-6)
    >>> table.title, table.row_count
    ('eta:2 compiled', 4)
    """
    waited_s = float(info.get("waited_s") or 0.0)
    if info["cache_hit"] and waited_s >= 0.05:
        how = f"waited {waited_s:.1f} s for another process's compile, then loaded its library"
    elif info["cache_hit"]:
        how = "loaded from the cache"
    else:
        how = "compiled now"
    table = Table(title=f"{ref} compiled", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # the cache's whole path, not cut short
    for key, value in (
        ("scorer", f"lleaves {info['lleaves']}"),
        ("took", f"{info['compile_s']:.1f} s, {how}"),
        (
            "parity with LightGBM",
            f"max |difference| {info['parity_max_abs_diff_s']:.2g} s on "
            f"{info['parity_rows']:,} rows (tolerance {tolerance_s:g} s)",
        ),
        ("cache", info["cache"] or "none: the registry directory is not writable"),
    ):
        table.add_row(key, value)
    return table
