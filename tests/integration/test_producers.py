"""The producers against the real broker: what goes out comes back intact, on the right topic
under the right key, and a bad line in a replayed file is reported without losing the rest.

Reads wait for what they expect with a deadline; they never trust the broker's end offsets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from typer.testing import CliRunner

from predictor.cli import app
from producers.config import SimConfig
from producers.publisher import Publisher, Routes
from producers.replay import replay
from producers.simulator import Marketplace
from stream_features.contract import Event, decode, encode
from stream_features.errors import RejectedMessage
from stream_features.event_log import LogLine, iter_log, write_log
from stream_features.kafka_clients import consumer_config, ensure_topics, producer_config
from stream_features.settings import Settings
from tests.quality_log import mixed_log

pytestmark = pytest.mark.integration

READ_TIMEOUT_S = 60.0
START = datetime(2026, 3, 6, 11, tzinfo=UTC)
SMALL = SimConfig(stores=150, orders_per_day=4000)


def _env(settings: Settings) -> dict[str, str]:
    """The environment a CLI run needs to use this test's broker and topics."""
    assert settings.kafka_bootstrap_servers is not None
    return {
        "ETA_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ETA_ORDERS_TOPIC": settings.orders_topic,
        "ETA_DASHER_EVENTS_TOPIC": settings.dasher_events_topic,
        "ETA_DELIVERIES_TOPIC": settings.deliveries_topic,
        "ETA_PREDICTIONS_TOPIC": settings.predictions_topic,
        "ETA_DLQ_TOPIC": settings.dlq_topic,
        "ETA_MONITORING_TOPIC": settings.monitoring_topic,
    }


def _read(
    settings: Settings, topics: Iterable[str], expected: int
) -> list[tuple[str, bytes | None, bytes]]:
    """(topic, key, value) of the first ``expected`` messages on ``topics``, or fail."""
    consumer = Consumer(consumer_config(settings, group=f"{settings.consumer_group}-read"))
    try:
        parts = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        consumer.assign(parts)
        out: list[tuple[str, bytes | None, bytes]] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is None:
                    out.append((msg.topic(), msg.key(), msg.value()))
        assert len(out) >= expected, f"read {len(out)} of {expected} within {READ_TIMEOUT_S}s"
        return out
    finally:
        consumer.close()


def _publisher(settings: Settings) -> Publisher:
    ensure_topics(settings)
    return Publisher(producer_config(settings), Routes.from_settings(settings))


def _assert_routed(
    settings: Settings, sent: list[Event], got: list[tuple[str, bytes | None, bytes]]
) -> None:
    """Every event came back once, on its topic under its key, in order per key."""
    routes = Routes.from_settings(settings)
    assert sorted(value for _, _, value in got) == sorted(encode(e) for e in sent)
    by_key_sent: dict[tuple[str, str], list[bytes]] = {}
    for event in sent:
        by_key_sent.setdefault(routes.route(event), []).append(encode(event))
    by_key_got: dict[tuple[str, str], list[bytes]] = {}
    for topic, key, value in got:
        assert key is not None
        by_key_got.setdefault((topic, key.decode()), []).append(value)
    assert by_key_got == by_key_sent


def test_a_simulated_stream_round_trips_through_the_broker(settings: Settings) -> None:
    events = list(Marketplace(SMALL, seed=2).events(START, START + timedelta(hours=2)))
    assert {e.type for e in events} == {
        "OrderCreated",
        "OrderDelivered",
        "MarketSupplySnapshot",
        "DasherEvent",
    }

    with _publisher(settings) as publisher:
        for event in events:
            publisher.publish(event)
    assert (publisher.sent, publisher.failed) == (len(events), 0)

    got = _read(settings, Routes.from_settings(settings).topics(), len(events))
    _assert_routed(settings, events, got)
    assert [decode(v) for _, _, v in got if v == encode(events[0])] == [events[0]]


def test_a_replayed_log_round_trips_through_the_broker(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "history.parquet"
    events = list(Marketplace(SMALL, seed=3).events(START, START + timedelta(hours=1)))
    write_log(path, events)

    with _publisher(settings) as publisher:
        report = replay(iter_log(path), publisher.publish, speed=None, wait=publisher.poll)

    assert (report.sent, report.rejected) == (len(events), 0)
    assert report.first_event_at == START
    got = _read(settings, Routes.from_settings(settings).topics(), len(events))
    _assert_routed(settings, events, got)


def test_replay_paces_event_time_gaps_by_speed(settings: Settings) -> None:
    events = list(Marketplace(SMALL, seed=4).events(START, START + timedelta(minutes=3)))
    lines = [LogLine(i, e, None, encode(e)) for i, e in enumerate(events, start=1)]

    with _publisher(settings) as publisher:
        report = replay(lines, publisher.publish, speed=120.0, wait=publisher.poll)

    assert report.span_s >= 120  # three minutes of event time, snapshots at 0, 60, 120 s
    assert report.wall_s >= report.span_s / 120 * 0.95
    assert report.wall_s < report.span_s / 120 + 5


def test_replay_cli_reports_a_malformed_line_and_sends_everything_else(
    settings: Settings, tmp_path: Path
) -> None:
    events = list(Marketplace(SMALL, seed=5).events(START, START + timedelta(minutes=30)))
    lines = [encode(e) for e in events]
    bad_at = len(lines) // 2
    lines.insert(bad_at, b'{"type":"OrderCreated","order_id":"o-bad"}')
    path = tmp_path / "recorded.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = CliRunner().invoke(
        app, ["produce", "replay", str(path), "--speed", "max"], env=_env(settings)
    )

    assert result.exit_code == 0, result.output
    assert f"line {bad_at + 1}: " in result.output
    assert "created_at: Field required" in result.output
    got = _read(settings, Routes.from_settings(settings).topics(), len(events))
    _assert_routed(settings, events, got)

    # for scripts: the same replay fails with --strict, after sending and reporting the rest
    strict = CliRunner().invoke(
        app, ["produce", "replay", str(path), "--speed", "max", "--strict"], env=_env(settings)
    )
    assert strict.exit_code == 1, strict.output
    assert f"line {bad_at + 1}: " in strict.output
    assert "--strict: 1 line(s)" in strict.output


def test_replay_of_every_rejection_and_finding_counts_them_and_sends_every_usable_event(
    settings: Settings, tmp_path: Path
) -> None:
    mixed = mixed_log()
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(mixed.lines) + b"\n")
    env = {**_env(settings), "ETA_DATA_DIR": str(tmp_path / "data")}

    result = CliRunner().invoke(app, ["produce", "replay", str(path), "--speed", "max"], env=env)

    assert result.exit_code == 0, result.output
    default = tmp_path / "data" / "rejects" / "export.jsonl.replay.jsonl"
    records = [orjson.loads(line) for line in default.read_bytes().splitlines()]
    assert [r["line"] for r in records if r["kind"] == "rejected"] == mixed.rejected_line_nos
    assert [r["line"] for r in records if r["kind"] == "finding"] == mixed.finding_line_nos
    assert f"{len(mixed.rejected_line_nos)} line(s) rejected, by reason:" in result.output
    for reason, n in mixed.by_reason.items():
        assert f"{n:>9,}  {reason}" in result.output, reason
    for rule, n in mixed.by_rule.items():
        assert f"{n:>9,}  {rule}" in result.output, rule
    assert f"(JSONL): {default}" in result.output
    usable = []
    for line in mixed.lines:
        with contextlib.suppress(RejectedMessage):
            usable.append(encode(decode(line)))
    assert len(usable) == mixed.usable
    got = _read(settings, Routes.from_settings(settings).topics(), mixed.usable)
    assert sorted(v for _, _, v in got) == sorted(usable)  # ids as integers sent as strings

    # under ETA_CONTRACT_STRICT the findings are rejected too, and --strict fails the run
    strict_file = tmp_path / "strict.jsonl"
    strict = CliRunner().invoke(
        app,
        ["produce", "replay", str(path), "--strict", "--rejects", str(strict_file)],
        env={**env, "ETA_CONTRACT_STRICT": "true"},
    )
    assert strict.exit_code == 1, strict.output
    kinds = [orjson.loads(line)["kind"] for line in strict_file.read_bytes().splitlines()]
    assert kinds == ["rejected"] * (len(mixed.rejected_line_nos) + len(set(mixed.finding_line_nos)))


def test_replay_interrupted_by_ctrl_c_reports_what_it_sent(
    settings: Settings, tmp_path: Path
) -> None:
    """A real-time replay of a long log is stopped with Ctrl-C: what was sent is flushed and
    summed up (it exited 130 with no summary before), the exit code says interrupted."""
    import os
    import signal
    import subprocess
    import sys

    ensure_topics(settings)
    path = tmp_path / "long.parquet"
    write_log(path, list(Marketplace(SMALL, seed=6).events(START, START + timedelta(hours=2))))
    eta = [sys.executable, "-c", "from predictor.cli import main; main()"]
    proc = subprocess.Popen(
        [*eta, "produce", "replay", str(path), "--speed", "10"],
        env={**os.environ, **_env(settings), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read(settings, Routes.from_settings(settings).topics(), 1)  # it has started sending
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    said = " ".join(out.split())  # rich may wrap the line whatever COLUMNS says
    assert "interrupted: Ctrl-C" in said and "Traceback" not in err, out + err
    sent = next(line for line in out.splitlines() if " sent " in f" {line} ")
    assert int("".join(c for c in sent.split("sent")[1] if c.isdigit())) >= 1, out


def test_simulate_cli_publishes_live_events_stamped_around_now(settings: Settings) -> None:
    before = datetime.now(UTC)
    result = CliRunner().invoke(
        app,
        ["produce", "simulate", "--rate", "30", "--duration", "2", "--stores", "200"],
        env=_env(settings),
    )
    after = datetime.now(UTC)

    assert result.exit_code == 0, result.output
    assert "OrderCreated" in result.output and "acknowledged" in result.output
    got = _read(settings, [settings.orders_topic], 20)
    orders = [decode(value) for _, _, value in got]
    assert all(o.type == "OrderCreated" for o in orders)
    stamps = [o.created_at for o in orders if o.type == "OrderCreated"]
    assert all(before - timedelta(seconds=1) <= t <= after for t in stamps)


def test_tail_shows_decoded_messages_and_reasons_for_bad_ones(settings: Settings) -> None:
    events = [
        e
        for e in Marketplace(SMALL, seed=6).events(START, START + timedelta(minutes=20))
        if e.type == "OrderCreated"
    ][:5]
    assert len(events) == 5
    with _publisher(settings) as publisher:
        for event in events[:2]:
            publisher.publish(event)
        publisher.publish_raw(settings.orders_topic, b"s1", b"this is not json")
        for event in events[2:]:
            publisher.publish(event)

    result = CliRunner().invoke(
        app,
        ["tail", "orders", "--from-beginning", "--max", "6", "--timeout", "20"],
        env=_env(settings),
    )

    assert result.exit_code == 0, result.output
    shown = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted(orjson.dumps(s) for s in shown) == sorted(encode(e) for e in events)
    assert "undecodable" in result.stderr and "not valid JSON" in result.stderr


def test_tail_of_a_missing_topic_says_so(settings: Settings) -> None:
    from stream_features.kafka_clients import ensure_topics

    ensure_topics(settings)
    result = CliRunner().invoke(
        app, ["tail", "no-such-topic-here", "--max", "1"], env=_env(settings)
    )
    assert result.exit_code == 1
    assert "no topic 'no-such-topic-here'" in result.stderr
    assert "aliases: orders, dasher-events" in result.stderr
    assert settings.orders_topic in result.stderr.split("topics there:")[1]  # what does exist


def test_tail_from_the_end_says_it_waits_for_new_messages(settings: Settings) -> None:
    from stream_features.kafka_clients import ensure_topics

    ensure_topics(settings)
    result = CliRunner().invoke(
        app, ["tail", "predictions", "--max", "1", "--timeout", "1"], env=_env(settings)
    )
    assert result.exit_code == 0, result.output
    assert f"following {settings.predictions_topic} from its end" in result.stderr
    assert result.stdout == ""
