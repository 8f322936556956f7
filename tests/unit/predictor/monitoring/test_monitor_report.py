"""``eta report``'s page: every figure is there, decodes as a PNG and shows something."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from predictor.models.reference import numeric_reference
from predictor.monitoring import figures
from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.drift import PREDICTION, ModelReference
from predictor.monitoring.join import Joined
from predictor.monitoring.recording import (
    JoinedLog,
    joined_frame,
    joined_to_predictions,
    write_summaries,
)
from predictor.monitoring.report import FIGURES, render_report
from stream_features.contract import to_ms

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
_IMG = re.compile(r'<figure id="(\w+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)">')


def recorded_pairs(n: int = 3000, seed: int = 0) -> list[Joined]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        created = to_ms(T0) + int(i * 30_000)
        actual = float(rng.gamma(6, 400))
        out.append(
            Joined(
                order_id=f"o{i}",
                model_name="eta",
                model_version="3",
                market_id=f"m{i % 4 + 1}",
                store_id=f"s{i % 50}",
                created_ms=created,
                served_ms=created + int(rng.lognormal(np.log(40), 0.6)),
                delivered_ms=created + int(actual * 1000),
                predicted_s=actual + float(rng.normal(120, 300)),
                freshness_s=float(rng.exponential(600)),
                features={"market__busy_ratio": float(rng.beta(4, 2))},
                p10_s=max(0.0, actual + float(rng.normal(-900, 400))),
                p90_s=actual + float(rng.normal(900, 400)),
            )
        )
    return out


def monitored(pairs: list[Joined]) -> Monitor:
    rng = np.random.default_rng(9)
    ref = ModelReference(
        {
            "market__busy_ratio": numeric_reference(rng.beta(2, 4, 5000)),
            PREDICTION: numeric_reference(rng.gamma(6, 400, 5000)),
        }
    )
    monitor = Monitor(MonitorConfig(), lambda _n, _v: ref)
    monitor.add_joined(pairs)
    monitor.add_predictions(joined_to_predictions(pairs))
    return monitor


def figures_of(page: str) -> dict[str, Image.Image]:
    found = {}
    for key, data in _IMG.findall(page):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        found[key] = image
    return found


def assert_drawn(image: Image.Image) -> None:
    assert image.format == "PNG"
    assert image.width >= 400 and image.height >= 250
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 5, "the figure is blank"
    assert (pixels < 128).mean() > 0.005, "hardly anything is drawn"


def test_the_report_holds_every_figure_drawn_from_what_was_recorded() -> None:
    pairs = recorded_pairs()
    monitor = monitored(pairs)
    summaries = monitor.summaries(datetime.now(UTC))

    page, made = render_report(joined_frame(pairs), summaries, psi_threshold=0.2)

    images = figures_of(page)
    assert list(images) == list(FIGURES) == [f.key for f in made]
    for image in images.values():
        assert_drawn(image)
    assert "<script" not in page and "http" not in page  # nothing fetched when it opens
    assert "eta:3" in page and "m4" in page  # the error table by model version and market


def test_figures_differ_with_the_data_they_show() -> None:
    a, b = recorded_pairs(seed=1), recorded_pairs(seed=2)
    _page_a, made_a = render_report(joined_frame(a), [], psi_threshold=0.2)
    _page_b, made_b = render_report(joined_frame(b), [], psi_threshold=0.2)
    by_key = {f.key: f.png for f in made_b}
    for fig in made_a:
        # no summaries, no registry: the same 'no drift' and 'no version' figures
        # nor any shadow pairs: the same 'no shadow' figure
        if fig.key not in ("psi_per_feature", "feature_importance", "champion_vs_challenger"):
            assert fig.png != by_key[fig.key], fig.key


def test_champion_and_challenger_are_drawn_from_the_recorded_shadow_pairs() -> None:
    from predictor.monitoring import figures

    rng = np.random.default_rng(3)
    n = 600
    actual = rng.uniform(900, 3600, n)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    paired = pl.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n)],
            "model_name": ["eta"] * n,
            "champion_version": ["3"] * n,
            "challenger_version": ["4"] * n,
            "challenger_stage": ["staging"] * n,
            "market_id": ["m1"] * n,
            "created_at": [start + timedelta(seconds=30 * i) for i in range(n)],
            "delivered_at": [start + timedelta(seconds=30 * i + 1800) for i in range(n)],
            "champion_duration_s": actual + rng.normal(0, 300, n),
            "challenger_duration_s": actual + rng.normal(0, 120, n),
            "actual_duration_s": actual,
        }
    )
    drawn = Image.open(io.BytesIO(figures.champion_vs_challenger(paired)))
    empty = figures.champion_vs_challenger(paired.clear())
    assert_drawn(drawn)
    assert figures.champion_vs_challenger(paired) != empty

    _page, made = render_report(
        joined_frame(recorded_pairs()), [], psi_threshold=0.2, paired=paired
    )
    (fig,) = [f for f in made if f.key == "champion_vs_challenger"]
    assert fig.png == figures.champion_vs_challenger(paired)


def test_coverage_counts_only_ranged_pairs_in_the_table_and_the_figure() -> None:
    pairs = recorded_pairs(1000)
    rangeless = [replace(p, p10_s=float("nan"), p90_s=float("nan")) for p in pairs[::2]]
    mixed = [*pairs[1::2], *rangeless]
    hour = {e.key: e for e in monitored(mixed).summaries(datetime.now(UTC))[2].errors}["*"]
    ranged = pairs[1::2]
    inside = sum(p.p10_s <= p.actual_s <= p.p90_s for p in ranged) / len(ranged)
    assert hour.range_samples == len(ranged) and hour.count == len(mixed)
    assert hour.range_coverage == pytest.approx(inside)
    page, _ = render_report(joined_frame(mixed), [], psi_threshold=0.2)
    assert_drawn(figures_of(page)["range_coverage"])
    old_only, _ = render_report(joined_frame(rangeless), [], psi_threshold=0.2)
    assert figures_of(old_only)["range_coverage"] != figures_of(page)["range_coverage"]


def test_feature_importance_per_version_in_use_and_its_move_from_the_last(
    tmp_path: Path,
) -> None:
    from predictor.models.registry import Registry
    from predictor.monitoring.importance import importance_by_version, versions_in_use
    from tests.unit._training_data import write_small_artifact

    registry = Registry(tmp_path / "models")
    for seed in (0, 1):
        write_small_artifact(tmp_path / f"a{seed}", seed=seed)
        registry.register(tmp_path / f"a{seed}", "eta")
    pairs = recorded_pairs(400)
    pairs = [replace(p, model_version="2" if i % 2 else "1") for i, p in enumerate(pairs)]
    frame = joined_frame([*pairs, replace(pairs[0], model_version="7")])  # 7: not registered
    versions = versions_in_use(frame, [])
    assert versions == [("eta", "1"), ("eta", "2"), ("eta", "7")]

    importance = importance_by_version(registry, versions)
    assert importance["eta:7"] is None
    for shares in (importance["eta:1"], importance["eta:2"]):
        assert shares is not None and sum(shares.values()) == pytest.approx(1.0)
    assert importance["eta:1"] != importance["eta:2"]

    page, _ = render_report(frame, [], psi_threshold=0.2, importance=importance)
    assert_drawn(figures_of(page)["feature_importance"])
    assert "Δ vs eta:1" in page and " pp</td>" in page
    assert "No artifact readable in the registry for eta:7" in page


def test_an_empty_record_still_gives_every_figure_saying_so() -> None:
    page, _made = render_report(joined_frame([]), [], psi_threshold=0.2)
    images = figures_of(page)
    assert list(images) == list(FIGURES)
    for image in images.values():
        assert_drawn(image)  # the "no data" text is drawn, not a blank canvas
    assert "No summaries recorded yet" in page


def test_eta_report_writes_the_page_from_the_monitors_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predictor.cli import app

    pairs = recorded_pairs(800)
    record = tmp_path / "data" / "monitor"
    log = JoinedLog(record, keep_rows=10_000)
    log.append(pairs[:400])
    log.flush()
    log.append(pairs[400:])
    log.flush()
    write_summaries(record, monitored(pairs).summaries(datetime.now(UTC)))
    monkeypatch.setenv("ETA_DATA_DIR", str(tmp_path / "data"))

    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "out")])

    assert result.exit_code == 0, result.output
    assert "800 joined pairs" in result.output
    page = (tmp_path / "out" / "report.html").read_text()
    assert list(figures_of(page)) == list(FIGURES)
    since = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "recent"), "--since-hours", "1"]
    )
    assert since.exit_code == 0, since.output
    recent = pl.Series([p.delivered_ms for p in pairs])
    expected = int((recent >= recent.max() - 3_600_000).sum())  # type: ignore[operator]  # polars types max() as any scalar; an int column's is an int
    assert f"({expected} joined pairs)" in since.output


def _flat(text: str) -> str:
    """Text in rich's error box, as one line: its borders and wrapping removed."""
    return " ".join(text.replace("│", " ").split())


def test_report_out_a_file_name_an_existing_file_or_an_unwritable_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out as a .html path writes that file; an existing file or a place that cannot be
    written is a usage error (exit 2, the option named), not a traceback."""
    from predictor.cli import app

    monkeypatch.setenv("ETA_DATA_DIR", str(tmp_path / "data"))
    named = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "week.html")])
    assert named.exit_code == 0, named.output
    assert (tmp_path / "week.html").read_text().startswith("<!DOCTYPE html>")

    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    refused = CliRunner().invoke(app, ["report", "--out", str(existing)])
    assert refused.exit_code == 2 and "is a file" in _flat(refused.output)
    assert "--out" in refused.output
    assert existing.read_text() == "mine"

    blocked = tmp_path / "ro"
    blocked.write_text("a file where a directory would go")
    unwritable = CliRunner().invoke(app, ["report", "--out", str(blocked / "sub")])
    assert unwritable.exit_code == 2 and "cannot write" in _flat(unwritable.output)
    assert unwritable.exception is None or isinstance(unwritable.exception, SystemExit)


def test_the_page_is_valid_enough_to_open(tmp_path: Path) -> None:
    from predictor.monitoring.report import write_report

    path = write_report(tmp_path / "r", joined_frame(recorded_pairs(200)), [], psi_threshold=0.2)
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count("<figure") == text.count("</figure>") == len(FIGURES)


def test_latency_figure_draws_live_orders_and_counts_the_backlog() -> None:
    """A demo's joined pairs are mostly warm-up orders served 40 minutes after their creation
    time; drawn as latency they read as a 40-minute service."""
    from datetime import timedelta

    from predictor.monitoring.figures import latency_histogram, split_latency

    t = datetime(2026, 1, 1, tzinfo=UTC)
    created = [t + timedelta(seconds=i) for i in range(100)]
    served = [
        c + timedelta(minutes=40) if i < 70 else c + timedelta(milliseconds=20 + i)
        for i, c in enumerate(created)
    ]
    frame = pl.DataFrame({"created_at": created, "served_at": served})
    live, backlog = split_latency(frame)
    assert len(live) == 30 and len(backlog) == 70
    assert live.max() < 1 and backlog.min() == 2400
    for part in (frame, frame.head(70)):  # with live orders, and with none
        assert latency_histogram(part).startswith(b"\x89PNG")


def _coloured(png: bytes) -> int:
    """How many pixels are not a shade of grey."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 30).sum())


@pytest.mark.parametrize(
    ("minutes", "every"), [(12, "1m"), (90, "2m"), (6 * 60, "10m"), (3 * 24 * 60, "2h")]
)
def test_time_buckets_follow_the_span_of_the_run(minutes: int, every: str) -> None:
    frame = pl.DataFrame({"at": [T0, T0 + timedelta(minutes=minutes)]})
    assert figures.bucket_for(frame, "at")[0] == every


def test_a_short_run_draws_minute_buckets_and_a_shorter_one_says_it_is_too_little() -> None:
    """A demo's few minutes of deliveries: a trend in minutes, and a heat map by time of the
    order rather than one hour's column; two minutes of them: the panel says so in words."""
    pairs = recorded_pairs(n=40)  # an order every 30 s: 20 minutes
    joined = joined_frame(pairs)
    short = joined.filter(pl.col("created_at") < T0 + timedelta(minutes=1))
    for draw in (figures.predicted_vs_actual, figures.mae_by_market_hour):
        # lines and cells are in colour; the note is black text on white
        assert _coloured(draw(joined)) > 1000, draw.__name__
        assert _coloured(draw(short)) == 0, draw.__name__
