"""Redis with an ACL user and password, and over TLS: our clients get in with the URL, and a
missing or wrong credential fails clearly, with no password in the error.

The embedded Redis runs with ``ETA_EMBEDDED_REDIS_PASSWORD`` (the default user off, one user
``etastream``). redis-server here is built without TLS, so TLS is a TLS-terminating proxy in
front of it with a throwaway CA (trustme); the client side, what this tests, is the real
``rediss://`` path of redis-py that every etastream Redis client takes from the URL.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from stream_features.contract import decode
from stream_features.errors import ServiceUnavailable
from stream_features.settings import Settings
from stream_features.stack import EMBEDDED_REDIS_USER, StackUrls, start_stack, wait_for_redis
from tests.fuzz.samples import VALID

pytestmark = pytest.mark.integration

PASSWORD = f"s3cret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def secured(stack: StackUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackUrls]:
    """The configured broker, and an embedded Redis that asks for a user and password."""
    data_dir = tmp_path_factory.mktemp("secured")
    settings = Settings(
        kafka_bootstrap_servers=stack.kafka_bootstrap_servers,
        embedded_redis_password=PASSWORD,  # type: ignore[arg-type]  # a str, as the environment gives it; pydantic makes the SecretStr
        data_dir=data_dir,
    )
    with start_stack(settings) as urls:
        yield urls


def port_of(urls: StackUrls) -> int:
    return int(urls.redis_url.rsplit(":", 1)[1].split("/")[0])


def unavailable(url: str) -> ServiceUnavailable:
    with pytest.raises(ServiceUnavailable) as caught:
        wait_for_redis(url, timeout_s=0.5)
    assert PASSWORD not in str(caught.value)
    return caught.value


def use_with_our_clients(url: str, tmp_path: Path, key_prefix: str) -> None:
    """The feature store's Lua batch path, and the registry's pointer mirror (SET + PUBLISH)."""
    from predictor.engines.wiring import redis_features
    from predictor.models_cli import _registry
    from tests.unit._training_data import write_small_artifact

    wait_for_redis(url, timeout_s=5)
    settings = Settings(redis_url=url, registry_dir=tmp_path / "models")  # type: ignore[arg-type]  # a str, as the environment gives it; pydantic makes the SecretStr
    features = redis_features(settings, url, key_prefix=key_prefix)
    events = [decode_json(m) for messages in VALID.values() for m in messages if is_event(m)]
    rows = features.update_and_read(events)
    assert len(rows) == 1 and rows.stats["applied"] == len(events)

    registry = _registry(settings)
    assert registry.redis is not None, "the registry could not reach Redis"
    registry.key_prefix = f"{key_prefix}registry"
    artifact = write_small_artifact(tmp_path / "artifact").artifact_dir
    version = registry.register(artifact)
    assert registry.promote("eta", version, "production").redis_updated
    assert registry.live_version("eta", "production") == version


def is_event(message: dict[str, object]) -> bool:
    return message["type"] not in {"DeliveryPrediction", "DeadLetter"}


def decode_json(message: dict[str, object]):  # type: ignore[no-untyped-def]  # returns whatever JSON the message held
    import orjson

    return decode(orjson.dumps(message))


# --- password and ACL user --------------------------------------------------------------------


def test_the_url_of_an_embedded_redis_with_a_password_names_its_user(secured: StackUrls) -> None:
    assert secured.redis_url == (
        f"redis://{EMBEDDED_REDIS_USER}:{PASSWORD}@127.0.0.1:{port_of(secured)}/0"
    )
    assert secured.exports()[1] == (
        'export ETA_REDIS_URL="redis://etastream:${ETA_EMBEDDED_REDIS_PASSWORD}'
        f'@127.0.0.1:{port_of(secured)}/0"'
    )


def test_our_clients_connect_with_user_and_password(
    secured: StackUrls, tmp_path: Path, key_prefix: str
) -> None:
    use_with_our_clients(secured.redis_url, tmp_path, key_prefix)


@pytest.mark.parametrize(
    ("credentials", "error"),
    [
        ("", "authenticated"),
        (f"{EMBEDDED_REDIS_USER}:wrong-{PASSWORD[::-1]}@", "invalid username-password pair"),
        (f"default:{PASSWORD}@", "invalid username-password pair"),  # the default user is off
        (f":{PASSWORD}@", "invalid username-password pair"),
    ],
    ids=["none", "wrong-password", "default-user", "no-user"],
)
def test_without_the_right_credentials_redis_refuses_clearly(
    secured: StackUrls, credentials: str, error: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{port_of(secured)}/0"
    exc = unavailable(url)
    assert error in str(exc)
    assert PASSWORD[::-1] not in str(exc)


def test_the_password_is_not_on_the_command_line_nor_in_the_data_dir(secured: StackUrls) -> None:
    """It goes in on stdin, and the config keeps only its SHA-256."""
    port = str(port_of(secured))
    servers = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.name() == "redis-server" and port in " ".join(p.cmdline())
    ]
    assert len(servers) == 1
    assert PASSWORD not in " ".join(servers[0].cmdline())
    client = redis.Redis.from_url(secured.redis_url)
    try:
        data_dir = Path(client.config_get("dir")["dir"])
        rules = " ".join(client.acl_list())
    finally:
        client.close()
    assert PASSWORD not in rules and "user default off" in rules
    files = [f for f in data_dir.rglob("*") if f.is_file()]
    assert files, data_dir
    for file in files:
        assert PASSWORD.encode() not in file.read_bytes(), file


# --- TLS (rediss://) -------------------------------------------------------------------------


class TlsProxy:
    """TLS in front of a plain TCP port: one thread per connection and direction."""

    def __init__(self, target_port: int, context: ssl.SSLContext) -> None:
        self._target, self._context = target_port, context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):  # a client that does not speak TLS, or distrusts us
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self._target))
        threading.Thread(target=self._pump, args=(upstream, tls), daemon=True).start()
        self._pump(tls, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def tls(secured: StackUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A TLS port in front of the secured Redis, and the CA file that vouches for it."""
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proxy = TlsProxy(port_of(secured), context)
    yield proxy.port, ca_file
    proxy.close()


def test_our_clients_connect_over_tls_with_the_ca_in_the_url(
    tls: tuple[int, Path], tmp_path: Path, key_prefix: str
) -> None:
    port, ca_file = tls
    url = f"rediss://{EMBEDDED_REDIS_USER}:{PASSWORD}@localhost:{port}/0?ssl_ca_certs={ca_file}"
    use_with_our_clients(url, tmp_path, key_prefix)


def test_tls_to_a_server_we_cannot_verify_is_refused_without_the_password(
    tls: tuple[int, Path],
) -> None:
    port, _ = tls
    exc = unavailable(f"rediss://{EMBEDDED_REDIS_USER}:{PASSWORD}@localhost:{port}/0")
    assert "certificate verify failed" in str(exc)
    assert f"rediss://{EMBEDDED_REDIS_USER}:****@localhost:{port}/0" in str(exc)


def test_plain_redis_to_the_tls_port_fails_without_the_password(tls: tuple[int, Path]) -> None:
    port, _ = tls
    exc = unavailable(f"redis://{EMBEDDED_REDIS_USER}:{PASSWORD}@localhost:{port}/0")
    assert f"Redis at redis://{EMBEDDED_REDIS_USER}:****@localhost:{port}/0" in str(exc)


def test_redis_errors_are_redis_errors(secured: StackUrls) -> None:
    """What a running service sees when its credentials stop working: a RedisError naming the
    cause (the engine retries those), and the password nowhere in it."""
    client = redis.Redis.from_url(
        f"redis://{EMBEDDED_REDIS_USER}:nope@127.0.0.1:{port_of(secured)}/0"
    )
    try:
        with pytest.raises(redis.AuthenticationError) as caught:
            client.ping()
    finally:
        client.close()
    assert "nope" not in str(caught.value)


# --- eta up prints no secret ------------------------------------------------------------------


def run_eta_up(env: dict[str, str], tmp_path: Path) -> list[str]:
    """``eta up`` until it printed both settings lines, then Ctrl-C; all it wrote (out + err)."""
    import os
    import queue
    import shutil
    import signal
    import subprocess
    import sys
    import time

    eta = shutil.which("eta", path=str(Path(sys.executable).parent)) or "eta"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
    proc = subprocess.Popen(
        [eta, "up"],
        cwd=tmp_path,
        env={**clean, "ETA_DATA_DIR": str(tmp_path / "data"), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while sum("ETA_REDIS_URL" in x or "ETA_KAFKA_BOOTSTRAP" in x for x in output) < 2:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            if line is None or time.monotonic() > deadline:
                pytest.fail(f"`eta up` printed no settings: {output}")
            output.append(line)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, output
        while (line := lines.get(timeout=30)) is not None:
            output.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    return output


def test_eta_up_with_secured_services_prints_no_secret(
    stack: StackUrls, secured: StackUrls, tmp_path: Path
) -> None:
    kafka_secret, api_secret = f"kafka-{uuid.uuid4().hex}", f"api-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex[:8]
    output = run_eta_up(
        {
            "ETA_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
            "ETA_KAFKA__SASL_USERNAME": "etastream",
            "ETA_KAFKA__SASL_PASSWORD": kafka_secret,  # ignored by a PLAINTEXT broker
            "ETA_REDIS_URL": secured.redis_url,
            "ETA_API_KEY": api_secret,
            **{
                f"ETA_{n.upper()}": f"{n}-{tag}"
                for n in Settings.model_fields
                if n.endswith("_topic")
            },
        },
        tmp_path,
    )
    text = "\n".join(output)
    for secret in (PASSWORD, kafka_secret, api_secret):
        assert secret not in text, text
    assert "# ETA_REDIS_URL, password not shown: redis://etastream:****@127.0.0.1:" in text


@pytest.mark.slow
def test_eta_up_with_an_embedded_password_prints_a_line_the_shell_completes(
    tmp_path: Path,
) -> None:
    import subprocess

    password = uuid.uuid4().hex
    output = run_eta_up({"ETA_EMBEDDED_REDIS_PASSWORD": password}, tmp_path)
    assert password not in "\n".join(output)
    (line,) = [x for x in output if x.startswith("export ETA_REDIS_URL=")]

    url = subprocess.run(
        ["bash", "-c", f'{line}; printf %s "$ETA_REDIS_URL"'],
        env={"ETA_EMBEDDED_REDIS_PASSWORD": password},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert url.startswith(f"redis://{EMBEDDED_REDIS_USER}:{password}@127.0.0.1:")
