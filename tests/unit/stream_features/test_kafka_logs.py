"""librdkafka's log lines go through Python logging (JSON in the services), one per minute each."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Producer

from stream_features.kafka_clients import KAFKA_LOG, KAFKA_REPEATS, producer_config
from stream_features.settings import Settings
from stream_features.stack import free_port


def test_a_client_without_its_broker_logs_through_logging_once_per_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the broker gone a client logs a failure per reconnect (librdkafka's own stderr
    lines, 20 a second from one worker); here they are records of ``librdkafka``, and the same
    message comes once a minute."""
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")  # nobody listens
    config = producer_config(
        settings, **{"reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 20}
    )
    producer = Producer(config)
    KAFKA_REPEATS.reset()  # another test's refused connection may be in it
    with caplog.at_level(logging.DEBUG, logger=KAFKA_LOG.name):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not caplog.records:
            producer.poll(0.1)
        seen = len(caplog.records)
        for _ in range(10):  # a second more of reconnects, every 10-20 ms
            producer.poll(0.1)
    assert config["logger"] is KAFKA_LOG
    assert seen and all(r.name == "librdkafka" for r in caplog.records)
    assert any(
        "Connection refused" in r.getMessage() or "refused" in r.getMessage().lower()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == seen, messages  # a second of reconnects added nothing
    producer.flush(0)
