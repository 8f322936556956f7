"""``eta up`` and ``start_stack`` as users meet them: a real subprocess, real signals, real files.

The embedded stack must answer, stop cleanly on Ctrl-C or SIGTERM without leaving a broker or a
redis-server behind, start nothing when services are configured, and keep Redis data across a
restart (AOF under the data directory).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import redis
from confluent_kafka.admin import AdminClient

from stream_features.settings import Settings
from stream_features.stack import StackUrls, start_stack

pytestmark = pytest.mark.integration

STARTUP_TIMEOUT_S = 60.0  # generous: the machine is shared with other test runs
EXIT_TIMEOUT_S = 30.0


def _eta_executable() -> str:
    """The ``eta`` console script of this interpreter's environment, else the one on PATH."""
    found = shutil.which("eta", path=str(Path(sys.executable).parent)) or shutil.which("eta")
    if found is None:
        pytest.fail("no `eta` console script: run `pip install -e .` first")
    return found


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ETA_* setting, so `eta up` starts the embedded stack."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ETA_")}
    return {**env, **extra}


@dataclass
class RunningUp:
    """An `eta up` subprocess, the settings it printed and the child processes it started."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    output: list[str] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)
    children: list[psutil.Process] = field(default_factory=list)

    def read_exports(self, timeout_s: float = STARTUP_TIMEOUT_S) -> dict[str, str]:
        """Read stdout until both `export ETA_...=` lines arrived, or fail with the output."""
        wanted = {"ETA_KAFKA_BOOTSTRAP_SERVERS", "ETA_REDIS_URL"}
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.exports.keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"`eta up` printed no settings within {timeout_s}s: {self.output}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"`eta up` exited with {self.proc.wait()}: {self.output}")
            self.output.append(line)
            if line.startswith("export ETA_"):
                key, _, value = line.removeprefix("export ").partition("=")
                self.exports[key] = value
        self.children = psutil.Process(self.proc.pid).children(recursive=True)
        return self.exports

    def stop(self, sig: signal.Signals) -> int:
        """Send `sig`, wait for the exit code and the rest of stdout."""
        self.proc.send_signal(sig)
        code = self.proc.wait(EXIT_TIMEOUT_S)
        while (line := self.lines.get(timeout=EXIT_TIMEOUT_S)) is not None:
            self.output.append(line)
        return code


def _pump(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]  # a process's text stdout, typed object to take either pipe
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture()
def eta_up(tmp_path: Path) -> Iterator[Callable[..., RunningUp]]:
    """Start `eta up` subprocesses; whatever a test leaves running is killed afterwards."""
    started: list[RunningUp] = []

    def start(data_dir: Path, **env: str) -> RunningUp:
        proc = subprocess.Popen(
            [_eta_executable(), "up"],
            cwd=tmp_path,
            env=_clean_env(ETA_DATA_DIR=str(data_dir), **env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C on the test run must not reach it twice
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        running = RunningUp(proc, lines)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(EXIT_TIMEOUT_S)
        for child in running.children:
            if child.is_running():
                child.kill()
        if running.proc.stdout is not None:
            running.proc.stdout.close()


def _broker_topics(bootstrap: str) -> set[str]:
    """Topic names from a metadata request; raises if no broker answers."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10)
    assert metadata.brokers, f"no broker in the metadata from {bootstrap}"
    return set(metadata.topics)


def _default_topics() -> set[str]:
    """The topic names `eta up` creates when no ETA_*_TOPIC is set."""
    return {f.default for name, f in Settings.model_fields.items() if name.endswith("_topic")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_eta_up_serves_kafka_and_redis_then_stops_clean(
    eta_up: Callable[..., RunningUp], tmp_path: Path, sig: signal.Signals
) -> None:
    running = eta_up(tmp_path / "data")
    exports = running.read_exports()

    assert _default_topics() <= _broker_topics(exports["ETA_KAFKA_BOOTSTRAP_SERVERS"])
    client = redis.Redis.from_url(exports["ETA_REDIS_URL"])
    try:
        assert client.ping() is True
    finally:
        client.close()
    programs = sorted(child.name() for child in running.children)
    assert any(p.startswith("tansu") for p in programs), programs
    assert "redis-server" in programs, programs

    assert running.stop(sig) == 0, running.output
    _, alive = psutil.wait_procs(running.children, timeout=EXIT_TIMEOUT_S)
    assert alive == [], f"left behind after {sig.name}: {alive}"
    assert any("stopped" in line for line in running.output), running.output


def test_eta_up_with_configured_services_starts_nothing(
    eta_up: Callable[..., RunningUp], stack: StackUrls, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = {  # its own topic names: `eta up` creates them on the shared broker
        f"ETA_{name.upper()}": f"{name.removesuffix('_topic')}-{tag}"
        for name in Settings.model_fields
        if name.endswith("_topic")
    }
    running = eta_up(
        tmp_path / "data",
        ETA_KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap_servers,
        ETA_REDIS_URL=stack.redis_url,
        **topics,
    )

    assert running.read_exports() == stack.env()
    assert running.children == []
    assert set(topics.values()) <= _broker_topics(stack.kafka_bootstrap_servers)
    assert running.stop(signal.SIGINT) == 0, running.output


def test_start_stack_with_configured_services_returns_them_and_starts_nothing(
    stack: StackUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETA_KAFKA_BOOTSTRAP_SERVERS", stack.kafka_bootstrap_servers)
    monkeypatch.setenv("ETA_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("ETA_DATA_DIR", str(tmp_path / "data"))
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}

    with start_stack(Settings()) as urls:
        during = {child.pid for child in me.children(recursive=True)}

    assert urls == StackUrls(stack.kafka_bootstrap_servers, stack.redis_url, False, False)
    assert during == before


def test_redis_data_survives_an_eta_up_restart_and_a_second_one_is_refused_meanwhile(
    eta_up: Callable[..., RunningUp], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    key, value = f"restart:{uuid.uuid4().hex}", uuid.uuid4().hex.encode()

    first = eta_up(data_dir)
    client = redis.Redis.from_url(first.read_exports()["ETA_REDIS_URL"])
    try:
        assert client.set(key, value) is True
    finally:
        client.close()
    clash = eta_up(data_dir)  # a second stack on the same AOF is refused while the first runs
    assert clash.proc.wait(STARTUP_TIMEOUT_S) == 1
    while (line := clash.lines.get(timeout=EXIT_TIMEOUT_S)) is not None:
        clash.output.append(line)
    said = " ".join(" ".join(clash.output).split())
    assert f"{data_dir / 'redis'} is in use by another embedded Redis" in said, said
    assert first.stop(signal.SIGINT) == 0, first.output
    assert any((data_dir / "redis").glob("appendonly.aof*")), "no AOF under the data directory"

    second = eta_up(data_dir)
    client = redis.Redis.from_url(second.read_exports()["ETA_REDIS_URL"])
    try:
        assert client.get(key) == value
    finally:
        client.close()
    assert second.stop(signal.SIGTERM) == 0, second.output
