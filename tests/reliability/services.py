"""A broker and a Redis of the scenario's own, and the faults the suite inflicts on them.

Each scenario gets a fresh stack from ``start_stack`` (the starter behind ``eta up``; about a
tenth of a second), so no scenario sees another's topics, groups or Redis keys, and Redis memory
is the scenario's alone. Redis can be killed with SIGKILL and started again on the same port
and data directory, where its append-only file brings the state back; the broker can be killed
for good (its topics are in memory only).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import psutil
import redis

from stream_features.contract import Event
from stream_features.redis_client import redis_client
from stream_features.redis_windows import RedisFeatureSource
from stream_features.replay_state import ReplayState
from stream_features.settings import Settings
from stream_features.stack import StackUrls, start_stack
from tests.integration.worker_helpers import WorkerProcess, live_orders, worker_env

__all__ = ["FaultStack", "ServeProcess", "Spawn", "fault_stack"]

Spawn = Callable[[Settings, str], WorkerProcess]
"""Starts an ``eta predict stream`` process with these settings, its log named after it."""


class FaultStack:
    """The scenario's broker and Redis; ``kill_redis`` / ``start_redis`` restart Redis,
    ``kill_broker`` takes the broker away, ``pause_*`` / ``resume_*`` hang either and let it go
    on."""

    def __init__(self, urls: StackUrls, data_dir: Path, services: contextlib.ExitStack) -> None:
        self.urls = urls
        self.data_dir = data_dir
        self._services = services
        self.redis_port = urlparse(urls.redis_url).port or 0

    def settings(self, **update: Any) -> Settings:
        """Settings of a worker or client on this stack."""
        return Settings(
            kafka_bootstrap_servers=self.urls.kafka_bootstrap_servers,
            redis_url=self.urls.redis_url,
            data_dir=self.data_dir,
            **update,
        )

    def client(self) -> redis.Redis:
        return redis_client(self.urls.redis_url, socket_timeout=10.0)

    def _child(self, name: str, port: str) -> psutil.Process:
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                title = " ".join(child.cmdline())  # redis-server sets it to "… host:port"
                if name in title and port in title:
                    return child
        raise AssertionError(f"no {name} of ours on {port}")

    def _redis_process(self) -> psutil.Process:
        return self._child("redis-server", f":{self.redis_port}")

    def kill_broker(self, timeout_s: float = 10.0) -> None:
        """SIGKILL the broker (it is not started again); waits until it is gone."""
        proc = self._broker_process()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout_s)

    def pause_broker(self) -> None:
        """SIGSTOP the broker: its connections stay open and nothing answers (a hung broker)."""
        self._broker_process().send_signal(signal.SIGSTOP)

    def resume_broker(self) -> None:
        self._broker_process().send_signal(signal.SIGCONT)

    def pause_redis(self) -> None:
        """SIGSTOP redis-server: connections stay open, the kernel even accepts new ones, and
        no command is answered (a hung Redis, which times out instead of refusing)."""
        self._redis_process().send_signal(signal.SIGSTOP)

    def resume_redis(self) -> None:
        self._redis_process().send_signal(signal.SIGCONT)

    def _broker_process(self) -> psutil.Process:
        return self._child("broker", f"--listener-url tcp://{self.urls.kafka_bootstrap_servers} ")

    def kill_redis(self, timeout_s: float = 10.0) -> None:
        """SIGKILL the redis-server: no shutdown, no final AOF rewrite; waits until it is gone."""
        proc = self._redis_process()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout_s)

    def start_redis(self) -> None:
        """redis-server again on the same port and data directory (it loads its AOF)."""
        again = Settings(
            kafka_bootstrap_servers=self.urls.kafka_bootstrap_servers,
            embedded_redis_port=self.redis_port,
            data_dir=self.data_dir,
        )
        self._services.enter_context(start_stack(again))

    def assert_windows_are_replay(
        self, events: Iterable[Event], lateness_s: int, url: str | None = None
    ) -> None:
        """The feature state in Redis (this stack's, or the one at ``url``) equals a replay of
        ``events`` through the in-memory rules (``ReplayState``): every streaming feature and
        its freshness, read for a probe order at each of ``live_orders``' 200 stores. Nothing
        lost, nothing counted twice."""
        reference = ReplayState(lateness_s=lateness_s)
        for event in events:
            reference.apply(event)
        probes = live_orders(200, "probe")
        client = self.client() if url is None else redis_client(url, socket_timeout=10.0)
        try:
            recovered = RedisFeatureSource(client, lateness_s=lateness_s).read(probes)
        finally:
            client.close()
        expected = reference.read(probes)
        assert recovered.names == expected.names
        np.testing.assert_array_equal(recovered.values, expected.values)
        np.testing.assert_array_equal(recovered.freshness_s, expected.freshness_s)

    def redis_memory(self) -> dict[str, int]:
        """``used_memory`` and friends, after any AOF rewrite in progress has finished."""
        client = self.client()
        try:
            deadline = time.monotonic() + 30
            while client.info("persistence")["aof_rewrite_in_progress"]:
                assert time.monotonic() < deadline, "AOF rewrite still running after 30 s"
                time.sleep(0.05)
            info = client.info("memory")
            return {
                "used_memory": int(info["used_memory"]),
                "used_memory_dataset": int(info["used_memory_dataset"]),
                "keys": int(client.dbsize()),
            }
        finally:
            client.close()


@contextlib.contextmanager
def fault_stack(data_dir: Path) -> Iterator[FaultStack]:
    """A fresh embedded broker and Redis (AOF under ``data_dir``), stopped at the end."""
    with contextlib.ExitStack() as services:
        urls = services.enter_context(start_stack(Settings(data_dir=data_dir)))
        yield FaultStack(urls, data_dir, services)


class ServeProcess:
    """``eta serve`` in a subprocess on the scenario's stack, its log in a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.base = f"http://{settings.http_host}:{settings.http_port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from predictor.cli import main; main()", "serve"],
            env=worker_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/readyz`` says 200 (Redis answers and the model is loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"eta serve not ready in {timeout_s} s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()
