"""Cost of the predictions topic's codec: produce throughput, CPU, bytes, per codec.

On the embedded stack (started here), a marketplace simulator's orders are turned into the
worker's prediction records (``encode_prediction``, without and with the model's features, as
``ETA_STREAM_INCLUDE_FEATURES`` writes them) and produced with the worker's producer config
(``producer_config(writes=WORKER_WRITES)`` with its latency tuning, ``linger.ms`` 1), in bursts
of ``--batch`` records as the worker produces one micro-batch, once per codec. For each:
records/s, this process's CPU (librdkafka's threads included) and the broker's per 100k
records, bytes on the wire per record (librdkafka's ``txbytes``), and the CPU of reading them
back with librdkafka (decompression included). Throughput is the best of ``--rounds`` runs,
CPU the least.

    python -m bench.compression                 # none, gzip (level 1), gzip:6, lz4, zstd, snappy
    python -m bench.compression --records 50000 --codecs none gzip lz4

Prints one JSON line per codec and writes ``bench/results/compression.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import psutil
from confluent_kafka import Consumer, Producer

from predictor.engines.wiring import WORKER_WRITES
from predictor.serving.encoding import encode_prediction
from producers.config import SimConfig
from producers.simulator import Marketplace
from stream_features.contract import OrderCreated
from stream_features.definitions import feature_names
from stream_features.kafka_clients import consumer_config, ensure_topics, producer_config
from stream_features.settings import Codec, Settings
from stream_features.stack import broker_binary, start_stack

RESULTS = Path(__file__).parent / "results" / "compression.json"


def prediction_records(n: int, with_features: bool) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) records as the worker writes them, from simulated orders."""
    market = Marketplace(SimConfig(orders_per_day=max(n, 1000) * 24), seed=7)
    start = datetime(2026, 3, 2, 11, tzinfo=UTC)
    served = datetime.now(UTC)
    names = feature_names()
    out: list[tuple[bytes, bytes]] = []
    for event in market.events(start, start + timedelta(hours=6)):
        if not isinstance(event, OrderCreated):
            continue
        i = len(out)
        features = (
            {name: ((i * 31 + j * 7) % 977) / 13.0 for j, name in enumerate(names)}
            if with_features
            else None
        )
        value = encode_prediction(
            event,
            1500.0 + (i * 7919) % 2400 + (i % 1000) / 1000,
            model_name="eta",
            model_version="7",
            served_at=served + timedelta(microseconds=i * 37),
            feature_freshness_s=float(i % 600) / 10,
            features=features,
        )
        out.append((event.order_id.encode(), value))
        if len(out) >= n:
            return out
    raise RuntimeError(f"the simulator gave {len(out)} orders, fewer than {n}")


def _broker() -> psutil.Process:
    binary = broker_binary()
    for child in psutil.Process().children(recursive=True):
        if binary in " ".join(child.cmdline()):
            return child
    raise RuntimeError("the embedded broker is not a child of this process")


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(
    settings: Settings, spec: str, records: list[tuple[bytes, bytes]], batch: int
) -> dict[str, Any]:
    """One run of ``spec``: a codec, or ``codec:level`` (librdkafka's ``compression.level``;
    etastream's own gzip level is ``GZIP_LEVEL``)."""
    name, _, level = spec.partition(":")
    codec = cast("Codec", name)
    topic = f"bench-predictions-{codec}-{uuid.uuid4().hex[:6]}"
    ours = Settings(
        **{
            **settings.model_dump(),
            "predictions_compression": codec,
            "dlq_compression": codec,
            "predictions_topic": topic,
        }
    )
    ensure_topics(ours, topics=[topic])
    stats: list[dict[str, Any]] = []
    config = {**producer_config(ours, writes=WORKER_WRITES), "linger.ms": 1}  # the worker's
    if level:
        config["compression.level"] = int(level)
    config |= {"statistics.interval.ms": 100, "stats_cb": lambda s: stats.append(orjson.loads(s))}
    producer = Producer(config)
    broker, me = _broker(), psutil.Process()
    cpu0, broker0, t0 = _cpu(me), _cpu(broker), time.perf_counter()
    for i in range(0, len(records), batch):
        for key, value in records[i : i + batch]:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0, "records left unacknowledged"
    elapsed = time.perf_counter() - t0
    cpu, broker_cpu = _cpu(me) - cpu0, _cpu(broker) - broker0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (stats and stats[-1]["txmsgs"] >= len(records)):
        producer.poll(0.1)
    txbytes = sum(b["txbytes"] for b in stats[-1]["brokers"].values() if b["nodeid"] >= 0)
    consumer = Consumer(consumer_config(ours, group=f"bench-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topic])
    got, cpu1 = 0, _cpu(me)
    deadline = time.monotonic() + 60
    while got < len(records) and time.monotonic() < deadline:
        got += sum(m.error() is None for m in consumer.consume(10_000, 0.2))
    read_cpu = _cpu(me) - cpu1
    consumer.close()
    raw = sum(len(k) + len(v) for k, v in records)
    per_100k = 100_000 / len(records)
    return {
        "codec": spec,
        "records": len(records),
        "records_per_s": round(len(records) / elapsed),
        "producer_cpu_s_per_100k": round(cpu * per_100k, 3),
        "broker_cpu_s_per_100k": round(broker_cpu * per_100k, 3),
        "wire_bytes_per_record": round(txbytes / len(records), 1),
        "raw_bytes_per_record": round(raw / len(records), 1),
        "read_cpu_s_per_100k": round(read_cpu * per_100k, 3),
        "read_all": got == len(records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="records per burst")
    parser.add_argument(
        "--codecs", nargs="+", default=["none", "gzip", "gzip:6", "lz4", "zstd", "snappy"]
    )
    parser.add_argument("--rounds", type=int, default=3, help="the best of this many runs")
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    with start_stack(Settings(data_dir=Path(tempfile.mkdtemp()))) as urls:
        settings = Settings(kafka_bootstrap_servers=urls.kafka_bootstrap_servers)
        for features in (False, True):
            records = prediction_records(args.records, with_features=features)
            measure(settings, "none", records[:10_000], args.batch)  # warm-up, not counted
            rows = []
            for codec in args.codecs:
                runs = [measure(settings, codec, records, args.batch) for _ in range(args.rounds)]
                best = min(runs, key=lambda r: r["producer_cpu_s_per_100k"])
                best["records_per_s"] = max(r["records_per_s"] for r in runs)
                rows.append(best)
                print(("features " if features else "") + json.dumps(best), flush=True)
            results["with_features" if features else "plain"] = rows
    RESULTS.write_text(
        json.dumps({"measured_at": datetime.now(UTC).isoformat(), **results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
