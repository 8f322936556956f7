"""Kafka client configuration and topic creation shared by producers, workers and tests.

Only configuration lives here; each transport builds its own clients from these dicts so that
security settings (``ETA_KAFKA__*``) reach every producer and consumer the same way.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined,unused-ignore]

from stream_features.settings import Settings

__all__ = [
    "KAFKA_LOG",
    "KAFKA_REPEATS",
    "admin_config",
    "consumer_config",
    "ensure_topics",
    "producer_config",
    "topic_names",
]

# Tansu describes only the configs given at creation, and some clients crash on a topic with
# none; real Kafka takes these as plain overrides.
TOPIC_CONFIG = {
    "retention.ms": "604800000",
    "cleanup.policy": "delete",
    "max.message.bytes": "10485760",
}


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


def producer_config(
    settings: Settings, bootstrap: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Idempotent, acks=all, compressed: no duplicates from retries, nothing acked half-way."""
    return {
        **_base(settings, bootstrap),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 10_485_760,
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
    ]


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
                config=dict(TOPIC_CONFIG),
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
