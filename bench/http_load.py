"""An open- and closed-loop HTTP load generator for bench/online.py, run in its own process.

Raw keep-alive HTTP/1.1 over asyncio streams (uvloop when installed): a request costs the
client a few tens of microseconds, so one process offers thousands per second without
becoming the bottleneck. The open loop sends on a fixed schedule and measures from each
request's *scheduled* time, so a stalled server cannot hide its queue.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

import numpy as np

__all__ = ["SHED_WITHOUT_RETRY_AFTER", "request_bytes", "run_load", "summary"]


def request_bytes(body: bytes) -> bytes:
    head = (
        "POST /v1/predictions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


SHED_WITHOUT_RETRY_AFTER = 599
"""The status recorded for a 503 that did not say when to come back (``Retry-After``)."""


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    retry_after = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        retry_after |= name == b"retry-after"
    await reader.readexactly(length)
    status = int(head[9:12])
    return SHED_WITHOUT_RETRY_AFTER if status == 503 and not retry_after else status


async def _open_loop(
    port: int, payloads: list[bytes], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    # perf_counter, not loop.time(): uvloop's clock (and its timers) tick in milliseconds, so
    # a sleep per request would cap the rate below 1,000/s and round every latency.
    clock = time.perf_counter
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    service: list[float] = []  # from the request's actual send, without the client's queue
    codes: list[int] = []
    offsets: list[float] = []
    statuses: dict[int, int] = {}
    start = clock() + 0.1

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            scheduled, payload = item
            sent_at = clock()
            status = await _exchange(reader, writer, payload)
            done = clock()
            latencies.append(done - scheduled)
            service.append(done - sent_at)
            codes.append(status)
            offsets.append(scheduled - start)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    total = int(rate * seconds)
    sent = 0
    while sent < total:  # every request due by now goes out, then sleep to the next one
        now = clock()
        while sent < total and start + sent / rate <= now:
            queue.put_nowait((start + sent / rate, payloads[sent % len(payloads)]))
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, start + sent / rate - clock()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = clock() - start
    return {
        "latencies_s": latencies,
        "service_s": service,
        "codes": codes,
        "offsets_s": offsets,
        "statuses": statuses,
        "elapsed_s": elapsed,
        "sent": total,
    }


async def _closed_loop(
    port: int, payloads: list[bytes], seconds: float, concurrency: int
) -> dict[str, Any]:
    clock = time.perf_counter
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    end = clock() + seconds

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while clock() < end:
            started = clock()
            status = await _exchange(reader, writer, payloads[i % len(payloads)])
            latencies.append(clock() - started)
            statuses[status] = statuses.get(status, 0) + 1
            i += concurrency
        writer.close()

    began = clock()
    await asyncio.gather(*(connection(k) for k in range(concurrency)))
    return {
        "latencies_s": latencies,
        "statuses": statuses,
        "elapsed_s": clock() - began,
        "sent": len(latencies),
    }


def _load_process(kind: str, args: tuple[Any, ...], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - plain asyncio works too, with more client CPU
        pass
    started_cpu = time.process_time()
    result = asyncio.run(_open_loop(*args) if kind == "open" else _closed_loop(*args))
    result["client_cpu_s"] = time.process_time() - started_cpu
    out.send(result)
    out.close()


def run_load(kind: str, *args: Any) -> dict[str, Any]:
    """``open`` (port, payloads, rate, seconds, connections) or ``closed`` (port, payloads,
    seconds, concurrency) in a fresh process; latencies, statuses and client CPU."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_load_process, args=(kind, args, theirs))
    proc.start()
    result: dict[str, Any] = ours.recv()
    proc.join(30)
    return result


def _per_second_p99(result: dict[str, Any]) -> list[float]:
    """p99 latency (ms) of the requests scheduled in each second: shows a stall as a spike."""
    lat = np.asarray(result["latencies_s"]) * 1000
    second = np.asarray(result["offsets_s"]).astype(int)
    return [
        round(float(np.percentile(lat[second == s], 99)), 2)
        for s in range(int(second.max()) + 1)
        if (second == s).any()
    ]


def summary(result: dict[str, Any], server_cpu: float) -> dict[str, Any]:
    lat = np.asarray(result["latencies_s"]) * 1000
    ok = result["statuses"].get(200, 0)
    per_second = _per_second_p99(result) if "offsets_s" in result else None
    return {
        "requests": int(result["sent"]),
        "ok": ok,
        "statuses": {str(k): v for k, v in result["statuses"].items()},
        "achieved_per_s": round(len(lat) / result["elapsed_s"], 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p90_ms": round(float(np.percentile(lat, 90)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "p999_ms": round(float(np.percentile(lat, 99.9)), 3),
        "max_ms": round(float(lat.max()), 3),
        "server_cpu_pct": round(server_cpu, 1),
        "client_cpu_pct": round(100 * result["client_cpu_s"] / result["elapsed_s"], 1),
        **({"p99_ms_by_second": per_second} if per_second is not None else {}),
    }
