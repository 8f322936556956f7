"""Kafka client configuration and topic creation shared by producers, workers and tests.

Only configuration lives here; each transport builds its own clients from these dicts so that
security settings (``ETA_KAFKA__*``) reach every producer and consumer the same way.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined,unused-ignore]  # not in every release's stubs

from stream_features.settings import Codec, Settings

__all__ = [
    "GZIP_LEVEL",
    "KAFKA_LOG",
    "KAFKA_REPEATS",
    "Output",
    "admin_config",
    "consumer_config",
    "ensure_topics",
    "producer_codec",
    "producer_config",
    "topic_config",
    "topic_names",
]

# Tansu describes only the configs given at creation, and some clients crash on a topic with
# none; real Kafka takes these as plain overrides.
TOPIC_CONFIG = {
    "retention.ms": "604800000",
    "cleanup.policy": "delete",
    "max.message.bytes": "10485760",
}

Output = Literal["sources", "predictions", "dlq", "monitoring"]
"""What a producer writes: the three source topics, or one of the topics etastream emits."""

GZIP_LEVEL = 1
"""zlib level of etastream's gzip producers: half the CPU of zlib's default (6) for about a
fifth more bytes on prediction records (``bench/compression.py``, docs/streaming.md)."""


class _Repeats(logging.Filter):
    """Lets one of each librdkafka message through per ``every_s``, numbers ignored.

    With the broker gone every client logs a connection failure per broker per reconnect, 20
    lines a second from one worker; one a minute says the same.

    >>> def record(text: str) -> logging.LogRecord:
    ...     return logging.LogRecord("librdkafka", 40, "", 0, text, (), None)
    >>> f = _Repeats(60)
    >>> f.filter(record("b1 refused (after 0ms)"))
    True
    >>> f.filter(record("b1 refused (after 3ms, 2 identical error(s) suppressed)"))
    False
    >>> f.filter(record("b1 timed out"))
    True
    """

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self._every_s = every_s
        self._last: dict[str, float] = {}

    def reset(self) -> None:
        """Forget what was let through (tests start from a clean slate)."""
        self._last.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        # "... failed: Connection refused (after 0ms in state CONNECT, 3 identical error(s)
        # suppressed)": the same failure whatever the counts in brackets say
        key = re.sub(r"\d+", "#", re.sub(r"\s*\(after .*\)$", "", record.getMessage()))
        now = time.monotonic()
        if now - self._last.get(key, -self._every_s) < self._every_s:
            return False
        if len(self._last) > 10_000:  # bounded: old keys go
            self._last.clear()
        self._last[key] = now
        return True


KAFKA_LOG = logging.getLogger("librdkafka")
"""Where every client's librdkafka log lines go: the process's logging (JSON lines in the
services), not librdkafka's own stderr lines."""
KAFKA_REPEATS = _Repeats(60.0)
KAFKA_LOG.addFilter(KAFKA_REPEATS)


def _base(settings: Settings, bootstrap: str | None) -> dict[str, Any]:
    servers = bootstrap or settings.kafka_bootstrap_servers
    if not servers:
        raise ValueError(
            "no Kafka bootstrap servers: set ETA_KAFKA_BOOTSTRAP_SERVERS or run "
            "inside `eta up`/start_stack"
        )
    return {"bootstrap.servers": servers, "logger": KAFKA_LOG, **settings.kafka_config()}


def admin_config(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    return _base(settings, bootstrap)


def _codec(settings: Settings, output: Output) -> Codec:
    codecs: dict[Output, Codec] = {
        "sources": settings.source_compression,
        "predictions": settings.predictions_compression,
        "dlq": settings.dlq_compression,
        "monitoring": settings.monitoring_compression,
    }
    return codecs[output]


def producer_codec(settings: Settings, writes: Iterable[Output]) -> Codec:
    """The codec of one producer writing ``writes``: theirs if they agree, else one all read.

    librdkafka compresses per producer, not per topic (confluent-kafka gives every topic the
    default topic config), and Tansu stores batches as they were sent, so when a producer's
    topics want different codecs it sends what every Kafka client reads without a plugin:
    none if one of them asks for none, else gzip. On Apache Kafka the topic's own
    ``compression.type`` (``topic_config``) then recompresses the others' batches.

    >>> producer_codec(Settings(), ["predictions", "dlq"])
    'gzip'
    >>> producer_codec(Settings(predictions_compression="none"), ["predictions", "dlq"])
    'none'
    >>> producer_codec(Settings(dlq_compression="zstd", predictions_compression="lz4"),
    ...                ["predictions", "dlq"])
    'gzip'
    """
    codecs = {_codec(settings, output) for output in writes}
    if len(codecs) == 1:
        return codecs.pop()
    return "none" if "none" in codecs else "gzip"


def _compression(settings: Settings, writes: Iterable[Output]) -> dict[str, Any]:
    """``compression.type`` of a producer writing ``writes`` (and gzip's level), each unless
    ETA_KAFKA__ sets it: that one applies to every producer, as ETA_KAFKA__* always does.

    >>> _compression(Settings(), ["predictions", "dlq"])
    {'compression.type': 'gzip', 'compression.level': 1}
    >>> _compression(Settings(), ["sources"])
    {'compression.type': 'lz4'}
    >>> _compression(Settings(kafka={"compression_type": "zstd"}), ["predictions"])
    {}
    """
    given = settings.kafka_config()
    if "compression.type" in given:
        return {}
    codec = producer_codec(settings, writes)
    if codec == "gzip" and "compression.level" not in given:
        return {"compression.type": codec, "compression.level": GZIP_LEVEL}
    return {"compression.type": codec}


def producer_config(
    settings: Settings,
    bootstrap: str | None = None,
    *,
    writes: Iterable[Output] = ("sources",),
    **extra: Any,
) -> dict[str, Any]:
    """Idempotent, acks=all, compressed with ``writes``' codec: no duplicates from retries,
    nothing acked half-way, records readable by the clients of the topics it writes."""
    return {
        **_base(settings, bootstrap),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": 10_485_760,
        **_compression(settings, writes),
        **extra,
    }


def consumer_config(
    settings: Settings, group: str | None = None, bootstrap: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Manual commits (at-least-once), earliest start, the group's session timeout."""
    return {
        **_base(settings, bootstrap),
        "group.id": group or settings.consumer_group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(settings.session_timeout_ms // 6, 100),
        "fetch.message.max.bytes": 10_485_760,
        **extra,
    }


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.orders_topic,
        settings.dasher_events_topic,
        settings.deliveries_topic,
        settings.predictions_topic,
        settings.dlq_topic,
        settings.monitoring_topic,
        settings.shadow_topic,
    ]


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """The configs ``topic`` is created with: ``TOPIC_CONFIG`` and its ``compression.type``.

    A topic etastream emits gets its codec (Kafka's name ``uncompressed`` for none), so
    Apache Kafka stores it in that codec whoever wrote it; any other topic (the sources) keeps
    the producer's (``producer``): the workers read every codec, and recompressing other
    producers' batches would cost the broker CPU for nothing. Tansu stores batches as they
    were sent whatever the topic says (``producer_codec`` covers that).

    >>> topic_config(Settings(), "delivery-eta-predictions")["compression.type"]
    'gzip'
    >>> topic_config(Settings(dlq_compression="none"), "orders.dlq")["compression.type"]
    'uncompressed'
    >>> topic_config(Settings(), "orders")["compression.type"]
    'producer'
    """
    emitted: dict[str, Output] = {
        settings.predictions_topic: "predictions",
        settings.dlq_topic: "dlq",
        settings.monitoring_topic: "monitoring",
        settings.shadow_topic: "predictions",  # read by those who read the predictions
    }
    output = emitted.get(topic)
    codec = "producer" if output is None else _codec(settings, output)
    return {**TOPIC_CONFIG, "compression.type": "uncompressed" if codec == "none" else codec}


def ensure_topics(
    settings: Settings,
    bootstrap: str | None = None,
    topics: list[str] | None = None,
    partitions: int | None = None,
) -> None:
    """Create the topics that do not exist yet, with explicit configs; existing ones are kept."""
    admin = AdminClient(admin_config(settings, bootstrap))
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in (topics or topic_names(settings)) if t not in existing]
    if not wanted:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                partitions or settings.topic_partitions,
                settings.topic_replication,
                config=topic_config(settings, t),
            )
            for t in wanted
        ],
        operation_timeout=10,
    )
    for topic, future in futures.items():
        try:
            future.result()
        except Exception as exc:  # another process may have created it meanwhile
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {topic!r}: {exc}") from exc
