"""The producer commands without a broker: clear refusals, the history writer, failed deliveries.

Nothing here needs a service: a command that needs Kafka must say how to get one, and a
publisher whose broker never answers must raise rather than drop events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from predictor.cli import app
from producers.errors import PublishError
from producers.publisher import Publisher, Routes
from producers.replay import replay
from stream_features.contract import MarketSupplySnapshot
from stream_features.event_log import LogLine, iter_log
from stream_features.stack import free_port

NO_BROKER = {"ETA_KAFKA_BOOTSTRAP_SERVERS": ""}


@pytest.mark.parametrize(
    "args",
    [
        ["produce", "simulate", "--duration", "1"],
        ["produce", "replay", "README.md"],
        ["tail", "orders", "--max", "1"],
    ],
    ids=["simulate", "replay", "tail"],
)
def test_commands_that_need_kafka_say_how_to_get_it(
    args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "x.jsonl"
    log.write_text("")
    args = [str(log) if a == "README.md" else a for a in args]
    monkeypatch.delenv("ETA_KAFKA_BOOTSTRAP_SERVERS", raising=False)

    result = CliRunner().invoke(app, args, env=NO_BROKER)

    assert result.exit_code == 2, result.output
    assert "eta up" in result.stderr and "export" in result.stderr


def test_history_writes_a_log_and_counts_it(tmp_path: Path) -> None:
    out = tmp_path / "h.parquet"
    result = CliRunner().invoke(
        app,
        [
            "produce",
            "history",
            "--days",
            "0.25",
            "--out",
            str(out),
            "--end",
            "2026-03-06T14:00:00Z",
            "--stores",
            "300",
            "--seed",
            "9",
        ],
    )

    assert result.exit_code == 0, result.output
    lines = list(iter_log(out))
    assert lines and all(line.error is None for line in lines)
    orders = sum(line.event is not None and line.event.type == "OrderCreated" for line in lines)
    assert f"{orders:,}" in result.stdout
    first = lines[0].event
    assert first is not None and first.type == "MarketSupplySnapshot"
    assert first.at == datetime(2026, 3, 6, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "h.txt"], ".parquet"),
        (["--out", "h.jsonl", "--end", "2026-03-06T14:00:00"], "timezone"),
        (["--out", "h.jsonl", "--shock", "m1:blackout:0:2"], "dasher_shortage"),
        (["--out", "h.jsonl", "--shock", "m42:demand_surge:0:2"], "m42"),
    ],
)
def test_history_refuses_bad_options_with_the_reason(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["produce", "history", *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(("rate", "message"), [("fast", "'max'"), ("0", "(0, 500]")])
def test_simulate_refuses_a_bad_rate(rate: str, message: str) -> None:
    env = {"ETA_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    result = CliRunner().invoke(app, ["produce", "simulate", "--rate", rate], env=env)
    assert result.exit_code == 2
    assert message in result.output


def test_a_publisher_whose_broker_never_answers_raises_instead_of_dropping() -> None:
    config = {
        "bootstrap.servers": f"127.0.0.1:{free_port()}",
        "message.timeout.ms": 500,
        "log_level": 0,  # the refused connections are the point, not news
        "enable.idempotence": True,
        "acks": "all",
    }
    event = MarketSupplySnapshot(
        market_id="m1",
        at=datetime(2026, 3, 6, tzinfo=UTC),
        onshift_dashers=3,
        busy_dashers=1,
        outstanding_orders=2,
    )
    publisher = Publisher(config, Routes())
    failed = pytest.raises(PublishError, match=r"2 event\(s\) were not delivered \(0 were\)")
    with failed, publisher:
        publisher.publish(event)
        publisher.publish(event)
    assert (publisher.sent, publisher.failed) == (0, 2)


def test_replay_counts_rejections_and_keeps_the_first_few() -> None:
    from stream_features.errors import RejectedMessage

    bad = [LogLine(n, None, RejectedMessage("broken", "subtotal"), b"{}") for n in range(2, 40)]
    sent: list[object] = []
    report = replay(bad, sent.append, speed=None, keep_rejections=5)
    assert (report.sent, report.rejected, len(report.rejections)) == (0, 38, 5)
    assert report.rejections[0].line_no == 2
    assert report.rejections[0].reason == "subtotal: broken"
    assert sent == [] and report.span_s == 0.0
