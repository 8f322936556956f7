"""Each topic's codec: what etastream's producers send and what its topics are created with.

kafkajs reading the worker's output is in ``tests/integration/test_kafkajs.py``; here, the rules
that decide the codec (docs/streaming.md, Compression).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from predictor.engines.wiring import WORKER_WRITES
from stream_features.kafka_clients import (
    GZIP_LEVEL,
    Output,
    producer_codec,
    producer_config,
    topic_config,
    topic_names,
)
from stream_features.settings import Codec, Settings

BASE = Settings(kafka_bootstrap_servers="127.0.0.1:9092")


def test_by_default_the_emitted_topics_are_gzip_and_the_sources_lz4() -> None:
    worker = producer_config(BASE, writes=WORKER_WRITES)
    monitor = producer_config(BASE, writes=("monitoring", "dlq"))
    sources = producer_config(BASE, writes=("sources",))
    assert worker["compression.type"] == monitor["compression.type"] == "gzip"
    assert worker["compression.level"] == monitor["compression.level"] == GZIP_LEVEL == 1
    assert sources["compression.type"] == "lz4" and "compression.level" not in sources
    assert producer_config(BASE) == sources  # callers that say nothing write sources


def test_each_emitted_topic_is_created_with_the_codec_its_producers_send() -> None:
    """On Tansu, which keeps batches as sent, the topic config then says what is stored."""
    writers: dict[str, tuple[Output, ...]] = {
        BASE.predictions_topic: WORKER_WRITES,
        BASE.dlq_topic: WORKER_WRITES,
        BASE.monitoring_topic: ("monitoring", "dlq"),
        BASE.shadow_topic: ("predictions",),  # the worker's shadow producer (shadow_stage)
    }
    for topic in topic_names(BASE):
        config = topic_config(BASE, topic)
        wanted = producer_codec(BASE, writers[topic]) if topic in writers else "producer"
        assert config["compression.type"] == wanted, topic
        assert {k: v for k, v in config.items() if k != "compression.type"} == {
            "retention.ms": "604800000",
            "cleanup.policy": "delete",
            "max.message.bytes": "10485760",
        }


@pytest.mark.parametrize(
    ("predictions", "dlq", "sent"),
    [
        ("gzip", "gzip", "gzip"),
        ("zstd", "zstd", "zstd"),
        ("lz4", "zstd", "gzip"),  # they differ: one every client reads
        ("gzip", "lz4", "gzip"),
        ("none", "gzip", "none"),
        ("snappy", "none", "none"),
    ],
)
def test_a_producer_of_two_topics_that_disagree_sends_what_every_client_reads(
    predictions: Codec, dlq: Codec, sent: Codec
) -> None:
    settings = BASE.model_copy(
        update={"predictions_compression": predictions, "dlq_compression": dlq}
    )
    assert producer_codec(settings, WORKER_WRITES) == sent
    # on Kafka the broker recompresses into each topic's own codec
    assert topic_config(settings, settings.predictions_topic)["compression.type"] == (
        "uncompressed" if predictions == "none" else predictions
    )


def test_the_codecs_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETA_PREDICTIONS_COMPRESSION", "none")
    monkeypatch.setenv("ETA_DLQ_COMPRESSION", "none")
    monkeypatch.setenv("ETA_SOURCE_COMPRESSION", "zstd")
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9092")
    assert producer_config(settings, writes=WORKER_WRITES)["compression.type"] == "none"
    assert producer_config(settings, writes=("sources",))["compression.type"] == "zstd"
    assert topic_config(settings, settings.dlq_topic)["compression.type"] == "uncompressed"
    monkeypatch.setenv("ETA_PREDICTIONS_COMPRESSION", "brotli")
    with pytest.raises(ValidationError, match="predictions_compression"):
        Settings()


def test_eta_kafka_compression_settings_win_for_every_producer() -> None:
    settings = BASE.model_copy(update={"kafka": {"compression_type": "zstd"}})
    for writes in (WORKER_WRITES, ("sources",)):
        config = producer_config(settings, writes=writes)
        assert config["compression.type"] == "zstd" and "compression.level" not in config
    leveled = BASE.model_copy(update={"kafka": {"compression_level": "6"}})
    assert producer_config(leveled, writes=WORKER_WRITES)["compression.level"] == "6"
