"""Reading back what the workers produced: progress while they run, an exact count after.

Tansu's end offsets can be wrong, so "everything has been read" is never decided from them.
Once the workers have stopped, ``drain`` writes an end marker into every partition of the
topic and reads until it has seen each one: a partition is read in order, so everything the
workers had written before it has then been read.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Sequence

from confluent_kafka import Message, Producer
from prometheus_client.parser import text_string_to_metric_families

from stream_features.kafka_clients import producer_config
from stream_features.settings import Settings
from tests.integration.worker_helpers import TopicReader, WorkerProcess
from tests.polling import wait_until

__all__ = ["END_MARKER", "await_predicted", "drain", "expect_predicted", "metric", "wait_until"]

END_MARKER = b"__end_of_scenario__"


def _read_predicted(
    reader: TopicReader, order_ids: set[bytes], count: int, timeout_s: float
) -> tuple[set[bytes], int]:
    """Read until ``count`` distinct orders of ``order_ids`` have a prediction (or the
    deadline): those orders, and how many predictions were read."""
    seen: set[bytes] = set()
    checked = 0

    def done(messages: list[Message]) -> bool:
        nonlocal checked
        seen.update(k for m in messages[checked:] if (k := m.key()) in order_ids)
        checked = len(messages)
        return len(seen) >= count

    reader.read_until(done, timeout_s)
    return seen, checked


def await_predicted(
    reader: TopicReader, order_ids: set[bytes], count: int, timeout_s: float
) -> int:
    """Read until ``count`` distinct orders of ``order_ids`` have a prediction (or the
    deadline); how many do."""
    return len(_read_predicted(reader, order_ids, count, timeout_s)[0])


def expect_predicted(
    reader: TopicReader,
    order_ids: set[bytes],
    timeout_s: float,
    workers: Sequence[WorkerProcess] = (),
) -> None:
    """Read until every order of ``order_ids`` has a prediction; otherwise fail with what a
    post-mortem needs (how many, a few missing ids, each worker's exit code, assignments and
    warnings) rather than the whole id set, which pytest would print in full."""
    started = time.monotonic()
    seen, checked = _read_predicted(reader, order_ids, len(order_ids), timeout_s)
    if len(seen) == len(order_ids):
        return
    lines = [
        f"{len(seen)} of {len(order_ids)} orders predicted within {timeout_s} s "
        f"(read {checked} predictions in {time.monotonic() - started:.1f} s); "
        f"missing e.g. {sorted(order_ids - seen)[:5]}"
    ]
    for worker in workers:
        lines.append(f"{worker.log_path.name}: exit code {worker.proc.poll()}")
        for line in worker.log_lines():
            level = str(line.get("level", "")).lower()
            if "partitions" in str(line.get("msg")) or level in ("warning", "error"):
                parts = line.get("partitions")
                lines.append(
                    f"  {line.get('ts')} {level} {line.get('msg')}"
                    + ("" if parts is None else f" ({len(parts)})")
                )
    raise AssertionError("\n".join(lines))


def drain(
    settings: Settings, reader: TopicReader, topic: str, timeout_s: float = 60.0
) -> list[Message]:
    """Everything on ``topic`` up to now (the writers must have stopped), markers left out."""
    token = uuid.uuid4().bytes  # this drain's markers, not an earlier one's
    producer = Producer(producer_config(settings))
    for partition in range(settings.topic_partitions):
        producer.produce(topic, token, END_MARKER, partition=partition)
    assert producer.flush(30) == 0, "end markers not acknowledged"
    markers: set[int] = set()
    checked = 0

    def done(messages: list[Message]) -> bool:
        nonlocal checked
        markers.update(
            m.partition() or 0
            for m in messages[checked:]
            if m.key() == END_MARKER and m.value() == token
        )
        checked = len(messages)
        return len(markers) == settings.topic_partitions

    messages = reader.read_until(done, timeout_s)
    assert len(markers) == settings.topic_partitions, f"end markers read: {sorted(markers)}"
    return [m for m in messages if m.key() != END_MARKER]


def metric(port: int, sample: str, **labels: str) -> float:
    """A worker's metric from its /metrics page: ``sample`` summed over the series that carry
    ``labels`` (0 when there is none yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        page = resp.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )
