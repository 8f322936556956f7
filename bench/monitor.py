"""Monitor throughput: the core alone, with the Redis join, and through Kafka end to end.

Input: the shocked run of ``bench/monitor_scenario.py`` (30 simulated hours of a two-market
marketplace, ~13k predictions with their features and ~12k deliveries), and the same records
with the features stripped (what the monitor sees when ETA_STREAM_INCLUDE_FEATURES is off).

- ``core``: decode + in-memory join + windows + alert check per batch (no I/O);
- ``redis``: the same with the join in a real redis-server (one script call per batch);
- ``kafka``: ``MonitorService`` reading the records from a real broker (Tansu here) and
  joining in Redis, timed from the first record consumed to the last (group join excluded);

then the cost of a publish (summaries of the three windows) and the Redis memory the join
holds per order still waiting for its delivery.

    python -m bench.monitor             # ~1 minute here
    python -m bench.monitor --repeat 5

Wall time on a shared machine is noisy, so each run also reports events per CPU second: this
process's CPU time (all its threads, librdkafka's included) plus redis-server's own (INFO cpu)
over the same span; the broker's CPU is not counted.

Prints a table and writes ``bench/results/monitor.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from bench.loads import keys_memory, produce
from bench.monitor_scenario import WireRecord, scenario_records, scenario_registry
from predictor.models.registry import Registry
from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.intake import IntakeConfig, decode_monitor_batch
from predictor.monitoring.join import JoinStore, MemoryJoin, joined_from
from predictor.monitoring.redis_join import RedisJoin
from predictor.monitoring.runner import build_service, registry_references
from predictor.serving.records import RawRecord
from stream_features.kafka_clients import ensure_topics
from stream_features.settings import Settings
from stream_features.stack import start_stack

RESULTS = Path(__file__).parent / "results" / "monitor.json"
INTAKE = IntakeConfig("deliveries", "predictions")
NOW_MS = time.time_ns() // 1_000_000


def without_features(records: tuple[WireRecord, ...]) -> list[WireRecord]:
    out = []
    for r in records:
        if r.topic == "predictions":
            data = orjson.loads(r.value)
            data.pop("features", None)
            r = WireRecord(r.at_ms, r.topic, r.key, orjson.dumps(data))
        out.append(r)
    return out


def redis_cpu_s(client: redis.Redis | None) -> float:
    if client is None:
        return 0.0
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_core(
    records: list[WireRecord], join: JoinStore, batch: int, client: redis.Redis | None = None
) -> dict[str, Any]:
    monitor = Monitor(MonitorConfig(), registry_references(Registry(scenario_registry())))
    raw = [RawRecord(r.value, r.topic, 0, i, r.key) for i, r in enumerate(records)]
    now = datetime.now(UTC)
    cpu, server = time.process_time(), redis_cpu_s(client)
    started = time.perf_counter()
    alerts_s = 0.0
    for i in range(0, len(raw), batch):
        decoded = decode_monitor_batch(raw[i : i + batch], INTAKE, now_ms=NOW_MS)
        assert not decoded.dead_letters, decoded.reasons[:1]
        result = join.join(decoded.ops)
        monitor.add_predictions(decoded.predictions)
        monitor.add_joined([joined_from(*p) for p in result.pairs])
        t = time.perf_counter()
        monitor.alerts(now)
        alerts_s += time.perf_counter() - t
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu + redis_cpu_s(client) - server
    t = time.perf_counter()
    monitor.summaries(now)
    return {
        "events": len(raw),
        "seconds": seconds,
        "events_per_s": len(raw) / seconds,
        "cpu_s": cpu_s,
        "events_per_cpu_s": len(raw) / cpu_s,
        "alert_check_ms_per_batch": 1000 * alerts_s / -(-len(raw) // batch),
        "publish_ms": 1000 * (time.perf_counter() - t),
        "joined": monitor.totals.get("joined", 0),
    }


def run_kafka(
    settings: Settings, records: list[WireRecord], tag: str, client: redis.Redis
) -> dict[str, Any]:
    settings = settings.model_copy(
        update={
            "predictions_topic": f"bench-predictions-{tag}",
            "deliveries_topic": f"bench-deliveries-{tag}",
            "monitoring_topic": f"bench-monitoring-{tag}",
            "dlq_topic": f"bench-dlq-{tag}",
            "monitor_group": f"bench-monitor-{tag}",
            "monitor_publish_s": 5.0,
        }
    )
    ensure_topics(settings)
    topics = {"predictions": settings.predictions_topic, "deliveries": settings.deliveries_topic}
    produce(settings, ((topics[r.topic], r.key, r.value) for r in records))
    service = build_service(settings, key_prefix=f"bench:{tag}:")
    service.open()
    first: float | None = None
    deadline = time.monotonic() + 300
    cpu = server = 0.0
    while service.stats.records < len(records) and time.monotonic() < deadline:
        if service.step(threading.Event()) and first is None:
            first = time.perf_counter()
            cpu, server = time.process_time(), redis_cpu_s(client)
    last = time.perf_counter()
    cpu_s = time.process_time() - cpu + redis_cpu_s(client) - server
    service.close()
    seconds = last - (first or last)
    return {
        "events": service.stats.records,
        "seconds": seconds,
        "events_per_s": service.stats.records / seconds if seconds else 0.0,
        "cpu_s": cpu_s,
        "events_per_cpu_s": service.stats.records / cpu_s if cpu_s else 0.0,
        "joined": service.stats.joined,
    }


def join_memory(client: redis.Redis, records: list[WireRecord]) -> dict[str, Any]:
    """Bytes per waiting order: only the predictions, none delivered yet."""
    prefix = f"bench-mem-{uuid.uuid4().hex[:6]}:"
    store = RedisJoin(client, 3600, prefix)
    predictions = [r for r in records if r.topic == "predictions"][:5000]
    raw = [RawRecord(r.value, r.topic, 0, i, r.key) for i, r in enumerate(predictions)]
    store.join(decode_monitor_batch(raw, INTAKE, NOW_MS).ops)
    total, keys = keys_memory(client, prefix)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    return {"orders": len(predictions), "keys": keys, "bytes_per_order": total / len(predictions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    console = Console(width=120)
    with console.status("building the scenario (simulate, train, score)…"):
        full = list(scenario_records(True))
        lean = without_features(scenario_records(True))
    rows, memory = _measure({"with features": full, "predictions only": lean}, args.repeat, console)
    _print_table(console, rows, memory)
    _save(rows, memory)
    console.print(f"wrote {RESULTS}")


def _measure(
    inputs: dict[str, list[WireRecord]], repeat: int, console: Console
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """On a fresh stack: each input through the join in memory and in Redis at two batch
    sizes (best of ``repeat``), then through Kafka; and the join state each leaves in Redis."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(data_dir=Path(tmp) / "stack", registry_dir=scenario_registry())
        with start_stack(base) as urls:
            settings = base.model_copy(
                update={
                    "kafka_bootstrap_servers": urls.kafka_bootstrap_servers,
                    "redis_url": SecretStr(urls.redis_url),
                    "data_dir": Path(tmp) / "data",
                }
            )
            client = redis.Redis.from_url(urls.redis_url)
            for label, records in inputs.items():
                for row in _core_rows(records, client, repeat):
                    rows.append({"path": row.pop("path"), "input": label, **row})
                    console.log(rows[-1])
                tag = uuid.uuid4().hex[:6]
                with console.status(f"kafka, {label}…"):
                    result = run_kafka(settings, records, tag, client)
                rows.append({"path": "kafka", "input": label, "batch": 2000, **result})
                console.log(rows[-1])
            memory = {label: join_memory(client, records) for label, records in inputs.items()}
    return rows, memory


def _core_rows(
    records: list[WireRecord], client: redis.Redis, repeat: int
) -> Iterator[dict[str, Any]]:
    """The join without Kafka, in memory (``core``) and in Redis, at batches of 200 and 2000:
    the best of ``repeat`` runs of each."""
    for batch in (200, 2000):
        for name, make, server in (
            ("core", MemoryJoin, None),
            ("redis", lambda: RedisJoin(client, 3600, f"b{uuid.uuid4().hex[:6]}:"), client),
        ):
            best = max(
                (run_core(records, make(), batch, server) for _ in range(repeat)),
                key=lambda r: r["events_per_cpu_s"],
            )
            yield {"path": name, "batch": batch, **best}


def _print_table(console: Console, rows: list[dict[str, Any]], memory: dict[str, Any]) -> None:
    table = Table(title="eta monitor throughput (best of runs)")
    columns = (
        "path",
        "input",
        "batch",
        "events",
        "events/s",
        "events/CPU-s",
        "alert ms",
        "publish ms",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["path"],
            r["input"],
            str(r["batch"]),
            str(r["events"]),
            f"{r['events_per_s']:,.0f}",
            f"{r['events_per_cpu_s']:,.0f}",
            f"{r['alert_check_ms_per_batch']:.2f}" if "alert_check_ms_per_batch" in r else "",
            f"{r['publish_ms']:.1f}" if "publish_ms" in r else "",
        )
    console.print(table)
    for label, m in memory.items():
        console.print(
            f"join state in Redis, {label}: {m['bytes_per_order']:.0f} B per waiting order"
        )


def _save(rows: list[dict[str, Any]], memory: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_bytes(
        orjson.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "runs": rows,
                "join_memory": memory,
            },
            option=orjson.OPT_INDENT_2,
        )
    )


if __name__ == "__main__":
    main()
