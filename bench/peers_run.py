"""Run one contender of the peer benchmark on a fresh broker and Redis, and measure it.

Per contender: a new embedded stack (Tansu + redis-server), the input produced on a fresh
``orders`` topic (4 partitions, explicit topic configs: Quix reads them to create its
changelogs), then the contender's worker process, started on that backlog. The bench reads
the output topic until every order was answered (or nothing new came for ``idle_s``, or
``limit_s`` passed: the row then says it is incomplete) and
measures:

* orders/s: distinct orders answered / (last new answer read - first order handled). The
  start is the earliest processing stamp on any answer: ``at_ms`` of the peers (taken as they
  handle an order), ``served_at`` of etastream (stamped per micro-batch as it is scored, a few
  ms after the batch was consumed), so the worker's start-up and group join are left out;
* CPU seconds of the worker, the broker, Redis and this reader over that span (``CpuShare``);
* the worker's peak RSS over its life (``Worker``), and its CPU from launch to the end;
* the answers against the oracle (``peers_check``).

A contender of several processes (``etastream:confluent-x2``: two ``eta predict stream`` in
one consumer group, on the same broker and Redis) is started on an empty ``orders`` topic;
the backlog is produced once the group has settled (``peers_group``: each member holds its
share), so the join and any rebalance it brings are not in the span; the span may then begin
while the backlog is still being produced, by this process on the same cores (``group``'s
``span_during_load_s`` says how long; ``load_topic_s`` at most). Its CPU is the workers'
summed (``worker``, and each as ``worker 1``, ``worker 2``), its RSS each worker's peak and
their sum, and it counts the assignments logged after the group settled (a rebalance inside
the span). Its answers are checked as
any: a duplicate (an order answered again after a rebalance) makes the row wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.peers_check import check_outputs
from bench.peers_group import Log, log_from_end, read_holdings, wait_settled
from bench.peers_input import BenchInput, load_topic
from bench.peers_profile import PySpy
from bench.stream import CpuShare, Worker
from stream_features.redis_client import redis_client
from stream_features.settings import Settings

__all__ = ["CONTENDERS", "ETA_FEATURE", "Contender", "EtaSetup", "run_contender"]

ETA_FEATURE = "store__orders_created__10m"
SETTLE_S = 120.0  # how long the workers of a several-process contender may take to join
END_DEADLINE_S = 30.0  # how long a worker that stops at the end may take to exit by itself
EXITED_QUIET_S = 2.0  # after the worker exited, how long to read on with nothing new
Parse = Callable[[bytes], tuple[str, int, float]]


@dataclass(frozen=True)
class Contender:
    tool: str
    variant: str
    script: str | None = (
        None  # its worker, ``python -m bench.<script>``; None: ``eta predict stream``
    )
    label: str = ""  # what the variant does, for the README
    stops_at_end: bool = False  # the worker exits by itself once it has read the backlog
    processes: int = 1  # workers in one consumer group (etastream only: it logs assignments)
    redis: str = "single"  # etastream's state: one redis-server, or "cluster" (3 masters)

    @property
    def name(self) -> str:
        return f"{self.tool}:{self.variant}"


CONTENDERS = (
    Contender("etastream", "confluent", None, "`eta predict stream`, whole pipeline"),
    Contender(  # the second core: never a tool's row (peers_report), every peer runs one
        "etastream",
        "confluent-x2",
        None,
        "`eta predict stream`, two processes in one consumer group",
        processes=2,
    ),
    Contender(  # never a tool's row (peers_report): the same worker, its state on a cluster
        "etastream",
        "confluent-cluster",
        None,
        "`eta predict stream`, its state on a 3-master Redis Cluster",
        redis="cluster",
    ),
    Contender("quix", "window", "peers_quix", "hopping window, `Count` + `Last`"),
    Contender("quix", "apply", "peers_quix", "stateful `apply`, minute buckets"),
    Contender("faust", "table", "peers_faust", "table of minute buckets"),
    Contender("faust", "hopping", "peers_faust", "hopping table, `expires=None`"),
    Contender("faust", "hopping-expires", "peers_faust", "hopping table, `expires=15 min`"),
    Contender(
        "bytewax",
        "stateful_map",
        "peers_bytewax",
        "`stateful_map` over minute buckets, no recovery",
        stops_at_end=True,
    ),
    Contender(
        "bytewax",
        "recovery",
        "peers_bytewax",
        "`stateful_map`, SQLite recovery snapshots every 1 s",
        stops_at_end=True,
    ),
    Contender("naive", "per-event", "naive", "confluent-kafka, a Redis round trip per order"),
    Contender(  # never a peer (peers_report): what any Python worker pays to go through Kafka
        "ceiling",
        "dict",
        "peers_ceiling",
        "reference: confluent-kafka + a dict in the process, no durability",
    ),
)


@dataclass(frozen=True)
class EtaSetup:
    """What etastream's worker needs beyond the stack: a registered model and batch tables."""

    registry_dir: Path
    model_name: str
    model: str
    batch_tables: Any
    overrides: dict[str, str] = field(default_factory=dict)  # other worker settings (--eta-set)


def _parse_eta(value: bytes) -> tuple[str, int, float]:
    pred = orjson.loads(value)
    served_ms = datetime.fromisoformat(pred["served_at"]).timestamp() * 1000
    count = pred.get("features", {}).get(ETA_FEATURE)
    return pred["order_id"], -1 if count is None else round(count), served_ms


def _parse_peer(value: bytes) -> tuple[str, int, float]:
    out = orjson.loads(value)
    return out["order_id"], int(out["count"]), float(out["at_ms"])


@dataclass
class Reading:
    outputs: list[tuple[str, int]] = field(default_factory=list)
    first_stamp_ms: float = float("inf")
    first_read_s: float | None = None
    last_new_read_s: float | None = None
    stalled: str | None = None


def read_outputs(
    reader: Consumer,
    expected: int,
    parse: Parse,
    alive: Callable[[], bool],
    on_first: Callable[[], None],
    limit_s: float,
    startup_s: float = 300.0,
    idle_s: float = 120.0,
) -> Reading:
    """Read answers until ``expected`` distinct orders, then 1 s more for late duplicates.

    A worker that exits (one that stops at the end of its input may do so before its last
    answers are read) is read on until ``EXITED_QUIET_S`` pass with nothing new; it stalled if
    some are still missing then."""
    got = Reading()
    seen: set[str] = set()
    started = time.time()
    done_at: float | None = None
    exited_at: float | None = None
    while done_at is None or time.time() - done_at < 1.0:
        now = time.time()
        if got.first_read_s is None and now - started > startup_s:
            got.stalled = f"no answer within {startup_s:.0f} s of the worker's start"
            break
        if got.last_new_read_s is not None and now - got.last_new_read_s > idle_s:
            got.stalled = f"nothing new for {idle_s:.0f} s"
            break
        if now - started > limit_s and done_at is None:
            got.stalled = f"stopped at the bench's limit of {limit_s:.0f} s"
            break
        if exited_at is None and not alive():
            exited_at = now
        quiet_since = max(exited_at or now, got.last_new_read_s or 0.0)
        if done_at is None and exited_at is not None and now - quiet_since > EXITED_QUIET_S:
            got.stalled = "the worker exited"
            break
        for msg in reader.consume(10_000, 0.1):
            if msg.error() is not None:
                continue
            order_id, count, stamp_ms = parse(msg.value() or b"{}")
            got.outputs.append((order_id, count))
            got.first_stamp_ms = min(got.first_stamp_ms, stamp_ms)
            if order_id not in seen:
                seen.add(order_id)
                got.last_new_read_s = time.time()
            if got.first_read_s is None:
                got.first_read_s = time.time()
                on_first()
        if done_at is None and len(seen) >= expected:
            done_at = time.time()
    return got


def _peer_cmd(c: Contender, bootstrap: str, redis_url: str, out: str, state: Path) -> list[str]:
    assert c.script is not None
    cmd = [sys.executable, "-m", f"bench.{c.script}", "--variant", c.variant]
    cmd += ["--bootstrap", bootstrap, "--input", "orders", "--output", out]
    cmd += ["--group", f"bench-{c.tool}", "--state-dir", str(state)]
    return cmd + (["--redis-url", redis_url] if c.tool == "naive" else [])


def _prepare(c: Contender, settings: Settings, eta: EtaSetup | None) -> None:
    """The topics, created before anything is produced (a producer would auto-create them
    without configs, and Tansu would then describe none), and etastream's batch tables."""

    from stream_features.batch import materialise_redis
    from stream_features.kafka_clients import ensure_topics

    if eta is None:
        ensure_topics(settings, topics=[settings.orders_topic, settings.predictions_topic])
        return
    ensure_topics(settings)  # all of the worker's topics, orders included
    client = redis_client(settings.redis_url_value() or "")
    try:
        materialise_redis(client, eta.batch_tables, "bench")
    finally:
        client.close()


def _redis_commands(url: str, top: int = 6) -> dict[str, dict[str, float]]:
    """Where Redis spent its time (``INFO commandstats``), the costliest first. EVALSHA's time
    includes the commands its script runs, which Redis also lists on their own."""
    import redis

    with redis.Redis.from_url(url) as client:
        stats: dict[str, dict[str, float]] = client.info("commandstats")
    ranked = sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:top]
    return {
        name.removeprefix("cmdstat_"): {
            "calls": v["calls"],
            "seconds": round(v["usec"] / 1e6, 2),
            "usec_per_call": v["usec_per_call"],
        }
        for name, v in ranked
    }


def cleared_stack_dir(c: Contender, workdir: Path) -> Path:
    """The contender's stack directory, emptied along with its peer state: a kept workdir
    (``--keep``) holds the last run's Redis AOF and snapshots, which a new stack would restore,
    so the contender would start from the previous run's counts and answer wrong."""
    stack_dir = workdir / f"stack-{c.tool}-{c.variant}"
    for left in (stack_dir, _state_dir(c, workdir)):
        shutil.rmtree(left, ignore_errors=True)
    return stack_dir


def _state_dir(c: Contender, workdir: Path) -> Path:
    """Where a peer keeps its own state (Bytewax's recovery snapshots)."""
    return workdir / f"state-{c.tool}-{c.variant}"


def _log_path(c: Contender, workdir: Path, index: int) -> Path:
    return workdir / f"{c.tool}-{c.variant}{f'-{index + 1}' if c.processes > 1 else ''}.log"


def _start_workers(
    c: Contender, settings: Settings, workdir: Path
) -> tuple[list[Worker], Parse, list[Log]]:
    """The contender's workers, all launched before any is waited for, and their logs."""
    if c.script is None:
        logs = [log_from_end(_log_path(c, workdir, i)) for i in range(c.processes)]
        return [Worker(settings, "confluent", path) for path, _ in logs], _parse_eta, logs
    assert c.processes == 1, "a peer's worker logs no assignments to wait for"
    log = _log_path(c, workdir, 0)
    state = _state_dir(c, workdir)
    bootstrap, redis_url = settings.kafka_bootstrap_servers or "", settings.redis_url_value() or ""
    cmd = _peer_cmd(c, bootstrap, redis_url, settings.predictions_topic, state)
    return [Worker(settings, c.tool, log, cmd=cmd)], _parse_peer, [log_from_end(log)]


@dataclass(frozen=True)
class _StateRedis:
    """Where etastream's state lives in a run: ``url``, and the cluster nodes' processes
    (``redis node 1`` ...) for ``CpuShare`` (none for the stack's own redis-server)."""

    url: str
    pids: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def _state_redis(c: Contender, stack_redis: str, stack_dir: Path) -> Iterator[_StateRedis]:
    """The stack's Redis, or for a ``cluster`` contender a 3-master cluster of its own
    (``stream_features.local_cluster``, the one the test suite runs on)."""
    if c.redis != "cluster":
        yield _StateRedis(stack_redis)
        return
    from stream_features.local_cluster import redis_cluster

    with redis_cluster(stack_dir / "cluster") as cluster:
        pids = {f"redis node {i + 1}": n.proc.pid for i, n in enumerate(cluster.nodes) if n.proc}
        yield _StateRedis(cluster.url, pids)


def _cpu_pids(urls: Any, workers: Sequence[Worker]) -> dict[str, int]:
    """``CpuShare``'s processes: the stack's, and ``worker`` or ``worker 1``, ``worker 2``…"""
    pids = CpuShare.stack_pids(urls, workers[0].proc.pid)
    if len(workers) > 1:
        del pids["worker"]
        pids |= {f"worker {i + 1}": w.proc.pid for i, w in enumerate(workers)}
    return pids


def _cpu_from_launch(workers: Sequence[Worker]) -> list[float | None]:
    """Each worker's user + system CPU seconds so far (it has not been reaped yet)."""
    out: list[float | None] = []
    for w in workers:
        try:
            out.append(sum(psutil.Process(w.proc.pid).cpu_times()[:2]))
        except psutil.Error:
            out.append(None)
    return out


def _settle(
    workers: Sequence[Worker], logs: Sequence[Log], reader: Consumer, topic: str
) -> dict[str, Any]:
    """Wait until the workers' group holds every partition of ``topic``, each once: what it
    took and each member's share (or that it did not settle: the backlog comes anyway)."""
    partitions = len(reader.list_topics(topic, timeout=10).topics[topic].partitions)
    started = time.monotonic()

    def alive() -> bool:
        return not any(_exited(w.proc.pid) for w in workers)

    held = wait_settled(logs, topic, partitions, SETTLE_S, alive)
    now = read_holdings(logs, topic)
    return {
        "settled_before_load": held is not None,
        "settle_s": round(time.monotonic() - started, 2),
        "partitions": [sorted(h.partitions) for h in now],
        "assignments": sum(h.assignments for h in now),  # replaced by those logged later
        "span": "from the first answer, which may come while the backlog is still produced "
        "(span_during_load_s of it): the group's join and any first rebalance came before",
    }


def _exited(pid: int) -> bool:
    """Whether the child has exited, leaving it unreaped (``WNOWAIT``): its CPU times stay
    readable until ``Worker.stop`` reaps it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _wait_exit(pid: int, deadline_s: float) -> bool:
    """Wait up to ``deadline_s`` for the child to exit by itself; whether it did."""
    until = time.monotonic() + deadline_s
    while not _exited(pid):
        if time.monotonic() > until:
            return False
        time.sleep(0.05)
    return True


def _reader(bootstrap: str, topic: str) -> Consumer:
    """The output topic's partitions assigned from the start: no group to join (a group join
    with librdkafka's default session timeout took ~20 s on Tansu)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-reader",  # required by librdkafka; never joined, never committed
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,  # Tansu answers long polls late (predictor/engines/wiring)
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
    return consumer


def run_contender(
    c: Contender,
    data: BenchInput,
    workdir: Path,
    eta: EtaSetup | None,
    profile: bool,
    limit_s: float,
    idle_s: float = 120.0,
) -> dict[str, Any]:
    """One contender on a stack of its own: the row of the results."""
    from stream_features.stack import start_stack

    stack_dir = cleared_stack_dir(c, workdir)
    embedded = Settings(data_dir=stack_dir, kafka_bootstrap_servers=None, redis_url=None)
    with start_stack(embedded) as urls, _state_redis(c, urls.redis_url, stack_dir) as state:
        extra: dict[str, Any] = {"predictions_topic": f"out-{c.tool}"}
        if eta is not None:
            extra = {
                "registry_dir": eta.registry_dir,
                "model_name": eta.model_name,
                # the prediction carries the feature the check reads, as each peer's answer
                # carries its one count (all ~30 inputs would cost it ~15% of its time)
                "stream_include_features": True,
                "stream_feature_names": (ETA_FEATURE,),
                **eta.overrides,
            }
        settings = Settings(
            kafka_bootstrap_servers=urls.kafka_bootstrap_servers,
            redis_url=state.url,
            data_dir=stack_dir,
            metrics_port=0,
            **extra,
        )
        load_before = os.getloadavg()
        _prepare(c, settings, eta)
        reader = _reader(urls.kafka_bootstrap_servers, settings.predictions_topic)
        group: dict[str, Any] = {}
        if c.processes == 1:  # on the backlog, as a worker restarted behind its input
            load_s = load_topic(urls.kafka_bootstrap_servers, settings.orders_topic, data)
            workers, parse, logs = _start_workers(c, settings, workdir)
            launched = time.time()
            cpu = CpuShare(_cpu_pids(urls, workers) | state.pids)
        else:  # the group settles on the empty topic, then the backlog comes
            workers, parse, logs = _start_workers(c, settings, workdir)
            launched = time.time()
            cpu = CpuShare(_cpu_pids(urls, workers) | state.pids)  # the span starts in the load
            group = _settle(workers, logs, reader, settings.orders_topic)
            load_s = load_topic(urls.kafka_bootstrap_servers, settings.orders_topic, data)
            group["loaded_at_s"] = time.time()
        spy: list[PySpy] = []

        def on_first() -> None:
            # etastream's one worker only: py-spy on one of two would slow that one alone
            if profile and c.script is None and c.processes == 1:
                spy.append(PySpy(workers[0].proc.pid, workdir / f"pyspy-{c.tool}.txt"))

        def alive() -> bool:
            return not any(_exited(w.proc.pid) for w in workers)

        got = read_outputs(
            reader, len(data.expected), parse, alive, on_first, limit_s, idle_s=idle_s
        )
        profiled = spy[0].stop() if spy else None
        redis_time = {} if state.pids else _redis_commands(state.url)
        worker_cpu_s = _cpu_from_launch(workers)
        # None: it is stopped with SIGTERM; else whether it exited by itself within the deadline
        by_itself = _wait_exit(workers[0].proc.pid, END_DEADLINE_S) if c.stops_at_end else None
        if group:  # assignments logged since the group settled: rebalances in the span
            after = sum(h.assignments for h in read_holdings(logs, settings.orders_topic))
            group["assignments_after_settling"] = after - group.pop("assignments")
            loaded = group.pop("loaded_at_s") - got.first_stamp_ms / 1000
            group["span_during_load_s"] = round(max(0.0, loaded), 2) if got.outputs else None
        with ThreadPoolExecutor(len(workers)) as pool:  # together: none rebalances onto another
            exit_codes = list(pool.map(Worker.stop, workers))
        cpu.close()
        reader.close()
    return _row(c, data, got, cpu, workers, exit_codes, worker_cpu_s, launched, load_s) | {
        "group": group or None,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "redis_commands": redis_time,
        "stopped_by_itself": by_itself,
        "profile": profiled,
    }


def _row(
    c: Contender,
    data: BenchInput,
    got: Reading,
    cpu: CpuShare,
    workers: Sequence[Worker],
    exit_codes: Sequence[int],
    worker_cpu_s: Sequence[float | None],
    launched: float,
    load_s: float,
) -> dict[str, Any]:
    check = check_outputs(data.expected, got.outputs)
    unique = check.received - check.duplicated - check.unexpected
    start_s, end_s = got.first_stamp_ms / 1000, got.last_new_read_s
    span = (end_s - start_s) if end_s is not None and got.outputs else None
    cores = cpu.between(start_s, end_s) if end_s is not None and span else {}
    window = cores.get("window_s", 0.0)
    each = sorted(k for k in cores if k.startswith("worker "))
    if each:  # several workers: ``worker`` is their sum (``total`` already counts each once)
        cores = {"worker": round(sum(cores[k] for k in each), 2), **cores}
    rss_mb = [round(w.rss_max / 2**20) for w in workers]
    cpu_known = [x for x in worker_cpu_s if x is not None]
    multi: dict[str, Any] = {}
    if len(workers) > 1:
        multi = {
            "peak_rss_mb_each": rss_mb,
            "worker_cpu_s_from_launch_each": [
                None if x is None else round(x, 2) for x in worker_cpu_s
            ],
            "exit_codes": list(exit_codes),
        }
    return {
        "tool": c.tool,
        "variant": c.variant,
        "label": c.label,
        "processes": len(workers),
        "redis": c.redis,
        "orders": len(data.expected),
        "answered": unique,
        "orders_per_s": round(unique / span) if span else None,
        "drain_s": round(span, 2) if span else None,
        "correct": check.ok,
        "wrong": check.wrong,
        "missing": check.missing,
        "duplicated": check.duplicated,
        "unexpected": check.unexpected,
        "wrong_examples": [list(e) for e in check.examples],
        "peak_rss_mb": sum(rss_mb),  # several workers: the sum of each one's peak
        "cpu_s": {
            k: round(v * window, 2) for k, v in cores.items() if k not in ("total", "window_s")
        },
        "cpu_cores": cores,
        "worker_cpu_s_from_launch": round(sum(cpu_known), 2) if cpu_known else None,
        "startup_s": round(got.first_read_s - launched, 2) if got.first_read_s else None,
        "load_topic_s": round(load_s, 2),
        "stalled": got.stalled,
        "exit_code": next((code for code in exit_codes if code), 0),
    } | multi
