"""Reading a log reports what a user can act on: counts by rejection reason and finding rule,
and every rejected line and finding in a JSONL file with its line number, field and reason."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
from typer.testing import CliRunner

from predictor.cli import app
from stream_features.event_log import iter_log
from stream_features.log_report import LogReport
from tests.quality_log import mixed_log


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(mixed_log().lines) + b"\n")
    return path


def test_a_mixed_log_is_counted_by_reason_and_rule_and_every_line_written(
    tmp_path: Path,
) -> None:
    expected = mixed_log()
    out = tmp_path / "rejects" / "r.jsonl"
    kept = []
    with LogReport(out) as report:
        for line in iter_log(_write(tmp_path)):
            report.add(line)
            if line.event is not None:
                kept.append(line)

    assert report.by_reason == expected.by_reason
    assert report.by_rule == expected.by_rule
    assert report.rejected == len(expected.rejected_line_nos)
    assert len(kept) == expected.usable
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    rejected = [r for r in records if r["kind"] == "rejected"]
    findings = [r for r in records if r["kind"] == "finding"]
    assert [r["line"] for r in rejected] == expected.rejected_line_nos
    assert [r["line"] for r in findings] == expected.finding_line_nos
    assert all(r["reason"] and r["raw"] for r in rejected)
    assert {r["field"] for r in rejected} >= {"order_id", "created_at", "subtotal", "type"}
    assert all(r["field"] and r["rule"] and r["event_id"] for r in findings)
    text = "\n".join(report.summary())
    assert f"{report.rejected} line(s) rejected, by reason:" in text
    assert "        2  order_id: Field required" in text
    assert "        3  missing_attribute" in text
    assert f"every rejected line and finding (JSONL): {out}" in text


def test_under_strict_every_finding_is_a_rejection(tmp_path: Path) -> None:
    expected = mixed_log()
    with LogReport(None) as report:
        for line in iter_log(_write(tmp_path), strict=True):
            report.add(line)
    lines_with_findings = len(set(expected.finding_line_nos))
    assert report.findings == 0
    assert report.rejected == len(expected.rejected_line_nos) + lines_with_findings
    assert sum(n for r, n in report.by_reason.items() if "ETA_CONTRACT_STRICT" in r) == (
        lines_with_findings
    )
    busy = (
        "busy_dashers: busy_dashers must be <= onshift_dashers "
        "(finding busy_above_onshift, rejected: ETA_CONTRACT_STRICT is set)"
    )
    assert report.by_reason[busy] == 1


def test_training_set_reports_counts_and_writes_the_rejects_file(tmp_path: Path) -> None:
    expected = mixed_log()
    history, out = _write(tmp_path), tmp_path / "train.parquet"
    env = {"ETA_DATA_DIR": str(tmp_path / "data")}

    result = CliRunner().invoke(
        app,
        ["features", "training-set", "--history", str(history), "--out", str(out)],
        env=env,
    )

    assert result.exit_code == 0, result.output
    default = tmp_path / "data" / "rejects" / "export.jsonl.training-set.jsonl"
    records = default.read_bytes().splitlines()
    assert len(records) == len(expected.rejected_line_nos) + len(expected.finding_line_nos)
    output = " ".join(result.output.split())
    assert f"{len(expected.rejected_line_nos)} line(s) rejected, by reason:" in output
    assert f"{sum(expected.by_rule.values())} data-quality finding(s)" in output
    assert "1 busy_above_onshift" in output and "2 zero_estimate" in output
    assert f"(JSONL): {default}" in result.output
    assert pl.read_parquet(out).height >= 1  # the delivered order without findings

    strict = CliRunner().invoke(
        app,
        ["features", "training-set", "--history", str(history), "--out", str(out),
         "--rejects", str(tmp_path / "strict.jsonl")],
        env={**env, "ETA_CONTRACT_STRICT": "true"},
    )  # fmt: skip
    assert strict.exit_code == 0, strict.output
    kinds = {orjson.loads(r)["kind"] for r in (tmp_path / "strict.jsonl").read_bytes().splitlines()}
    assert kinds == {"rejected"}


def test_batch_features_report_counts_and_write_the_rejects_file(tmp_path: Path) -> None:
    expected = mixed_log()
    history = _write(tmp_path)

    result = CliRunner().invoke(
        app,
        ["features", "batch", "--history", str(history), "--as-of", "2026-03-02T00:00:00Z",
         "--out", str(tmp_path / "offline"), "--no-redis"],
        env={"ETA_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    default = tmp_path / "data" / "rejects" / "export.jsonl.batch.jsonl"
    records = [orjson.loads(line) for line in default.read_bytes().splitlines()]
    assert [r["line"] for r in records if r["kind"] == "rejected"] == expected.rejected_line_nos
    assert [r["line"] for r in records if r["kind"] == "finding"] == expected.finding_line_nos
    output = " ".join(result.output.split())
    assert f"{len(expected.rejected_line_nos)} line(s) rejected, by reason:" in output
    assert f"{sum(expected.by_rule.values())} data-quality finding(s)" in output
    assert f"(JSONL): {default}" in result.output
