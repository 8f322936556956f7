"""Session fixtures: a real Kafka-protocol broker and a real Redis, never mocks.

External servers when ETA_KAFKA_BOOTSTRAP_SERVERS / ETA_REDIS_URL point at them, containers when
ETA_TEST_BACKEND=testcontainers (and a Docker engine is there), else the embedded stack that
``eta up`` starts. Missing services fail loudly; they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream_features.local_cluster import LocalCluster, redis_cluster
from stream_features.redis_client import close_client
from stream_features.redis_client import redis_client as make_redis_client
from stream_features.settings import Settings
from stream_features.stack import StackUrls, start_stack


def _testcontainers_stack() -> Iterator[StackUrls]:  # pragma: no cover - needs Docker
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer().with_kraft() as kafka, RedisContainer() as rds:
        host, port = rds.get_container_host_ip(), rds.get_exposed_port(6379)
        yield StackUrls(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", False, False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--save-results",
        metavar="DIR",
        type=Path,
        default=None,
        help="save the fault suite's table (tests/reliability) as DIR/reliability.json; "
        "bench/results updates the README's figures. Without it the table goes to pytest's "
        "temporary directory, so a test run leaves the checkout as it was",
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackUrls]:
    """A real broker and Redis for the whole session."""
    if os.environ.get("ETA_TEST_BACKEND") == "testcontainers":
        yield from _testcontainers_stack()
        return
    data_dir = tmp_path_factory.mktemp("eta-stack")
    with start_stack(Settings(data_dir=data_dir)) as urls:
        yield urls


@pytest.fixture()
def settings(stack: StackUrls, tmp_path: Path) -> Settings:
    """Settings pointing at the session stack, with topics and group unique to this test."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=stack.kafka_bootstrap_servers,
        redis_url=stack.redis_url,
        data_dir=tmp_path / "data",
        registry_dir=tmp_path / "models",
        orders_topic=f"orders-{tag}",
        dasher_events_topic=f"dasher-events-{tag}",
        deliveries_topic=f"deliveries-{tag}",
        predictions_topic=f"predictions-{tag}",
        dlq_topic=f"orders-dlq-{tag}",
        monitoring_topic=f"monitoring-{tag}",
        shadow_topic=f"shadow-{tag}",
        consumer_group=f"group-{tag}",
    )


@pytest.fixture()
def key_prefix() -> str:
    """A Redis key prefix of this test's own, instead of FLUSHALL."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real 3-master Redis Cluster for the session (``stream_features/local_cluster.py``)."""
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as started:
        yield started


REDIS_KINDS = ["single", pytest.param("cluster", marks=[pytest.mark.cluster, pytest.mark.slow])]
"""``@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)`` runs a test on the
session's Redis and again on the Redis Cluster (marked ``cluster`` and ``slow``: CI runs it, a
quick ``-m "not slow"`` run leaves it out)."""


@pytest.fixture()
def redis_url(request: pytest.FixtureRequest, stack: StackUrls) -> str:
    """The session Redis's URL, or the cluster's when the test is parametrised with it."""
    if getattr(request, "param", "single") == "cluster":
        cluster: LocalCluster = request.getfixturevalue("cluster")
        return cluster.url
    return stack.redis_url


@pytest.fixture()
def redis_client(request: pytest.FixtureRequest, stack: StackUrls) -> Iterator[redis.Redis]:
    """A client of the session Redis, or (``indirect`` param ``"cluster"``) of the cluster."""
    url = stack.redis_url
    if getattr(request, "param", "single") == "cluster":
        url = request.getfixturevalue("cluster").url
    client = make_redis_client(url)
    yield client
    close_client(client)
