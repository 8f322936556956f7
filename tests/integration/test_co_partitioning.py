"""Two workers of one group: partition p of orders, deliveries and dasher-events go to the
same member, so a store's orders and deliveries (and the state they share) meet in one place."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from predictor.engines.wiring import CO_PARTITIONED
from stream_features.kafka_clients import consumer_config, ensure_topics
from stream_features.settings import Settings

pytestmark = pytest.mark.integration


def test_the_range_assignor_gives_each_member_whole_partitions(settings: Settings) -> None:
    ensure_topics(settings)
    topics = [settings.orders_topic, settings.dasher_events_topic, settings.deliveries_topic]
    members = [
        Consumer({**CO_PARTITIONED, **consumer_config(settings), "session.timeout.ms": 6000})
        for _ in range(2)
    ]
    try:
        for member in members:
            member.subscribe(topics)
        deadline = time.monotonic() + 60
        owned: list[dict[str, set[int]]] = [{}, {}]
        while time.monotonic() < deadline:
            for i, member in enumerate(members):
                member.poll(0.2)
                by_topic: dict[str, set[int]] = {}
                for tp in member.assignment():
                    by_topic.setdefault(tp.topic, set()).add(tp.partition)
                owned[i] = by_topic
            total = sum(len(p) for o in owned for p in o.values())
            if total == len(topics) * settings.topic_partitions and all(owned):
                break
        assert all(owned), f"one member got nothing: {owned}"
        for by_topic in owned:
            partitions = {frozenset(by_topic.get(t, set())) for t in topics}
            assert len(partitions) == 1, f"a member's partitions differ by topic: {by_topic}"
        assert not set(owned[0][topics[0]]) & set(owned[1][topics[0]])
    finally:
        for member in members:
            member.close()
