"""Hang Redis (SIGSTOP) for 10 s mid-stream, then let it go on (SIGCONT).

A hung Redis is worse than a dead one: connections stay open, the kernel even accepts new
ones, and nothing answers, so every client waits for its own timeout. What etastream promises:

* the stream worker's calls time out (``ETA_STREAM_REDIS_TIMEOUT_S``), it rewinds the batch and
  retries with backoff, and once Redis answers again it goes on by itself: every order is
  predicted, and the windows equal a replay of the same events (a write sent before the hang
  and applied after it, by a Redis that then also sees the retry, is not counted twice);
* the HTTP API stays responsive: ``/healthz`` answers (``/readyz`` asks Redis on a thread of
  its own), ``/readyz`` says 503 and a prediction request gets its 503 within
  ``ETA_API_REDIS_TIMEOUT_S`` (0.5 s, nothing retried), not after the hang; and it is ready
  again by itself once Redis is.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.feature_events import order
from tests.integration.worker_helpers import TopicReader, live_orders
from tests.reliability.readback import await_predicted, drain, expect_predicted, wait_until
from tests.reliability.services import FaultStack, ServeProcess, Spawn
from tests.reliability.tally import Row, tally
from tests.reliability.traffic import stream_orders

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS, CHUNK = 9000, 500
HANG_S = 10.0
PAUSE_S = 0.8  # 18 chunks: about 15 s of stream, the hang starting a few seconds in


def _timed(call: httpx.Client, method: str, path: str, **kwargs: object) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = call.request(method, path, **kwargs).status_code  # type: ignore[arg-type]  # **kwargs passed through as httpx's request takes them
    except httpx.TimeoutException:
        status = 0  # no answer within the client's own 5 s
    return status, time.monotonic() - started


def test_redis_hang(served: Settings, faults: FaultStack, spawn: Spawn, row: Row) -> None:
    worker = spawn(served, "worker")
    api_settings = served.model_copy(update={"http_port": free_port(), "http_host": "127.0.0.1"})
    api = ServeProcess(api_settings, faults.data_dir / "serve.log")
    reader = TopicReader(served, served.predictions_topic)
    orders = live_orders(ORDERS, "h")
    ids = {o.order_id.encode() for o in orders}
    try:
        api.wait_ready()
        # paced to outlast the hang, so the worker has batches to write while Redis hangs
        producer = stream_orders(served, orders, chunk=CHUNK, pause_s=PAUSE_S)
        await_predicted(reader, ids, ORDERS // 6, timeout_s=60)
        probe = order("hang-probe", orders[0].created_at).model_dump_json()
        healthz: list[float] = []
        readyz: list[tuple[int, float]] = []
        predict: list[tuple[int, float]] = []
        faults.pause_redis()
        hung_at = time.monotonic()
        try:
            with httpx.Client(base_url=api.base, timeout=5.0) as client:
                while time.monotonic() - hung_at < HANG_S:
                    status, took = _timed(client, "GET", "/healthz")
                    assert status == 200, f"/healthz answered {status} during the hang"
                    healthz.append(took)
                    readyz.append(_timed(client, "GET", "/readyz"))
                    predict.append(_timed(client, "POST", "/v1/predictions", content=probe))
        finally:
            faults.resume_redis()
        resumed_at = time.monotonic()
        wait_until(
            lambda: httpx.get(f"{api.base}/readyz", timeout=5).status_code == 200,
            timeout_s=10,
            what="the API ready again after the hang",
        )
        ready_again_s = time.monotonic() - resumed_at
        producer.join(120)
        expect_predicted(reader, ids, 120, [worker])
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        api.stop()

    messages = drain(served, reader, served.predictions_topic)
    reader.close()
    counted = tally(ids, (m.key() for m in messages))
    row.count(ORDERS, counted)
    retries = sum("feature store unavailable" in str(x.get("msg")) for x in worker.log_lines())
    row.notes.update(
        hang_s=HANG_S,
        worker_retries_logged=retries,
        healthz_max_s=round(max(healthz), 3),
        readyz_max_s=round(max(t for _, t in readyz), 3),
        predict_max_s=round(max(t for _, t in predict), 3),
        api_ready_again_s=round(ready_again_s, 2),
    )
    assert counted.lost == 0, f"never predicted: {sorted(counted.missing)[:5]}"
    assert counted.unexpected == 0
    assert retries > 0, "the worker never timed out on the hung Redis"
    worker.wait_for_log("feature store is back")
    # the API answered fast and said why: 503 within its Redis timeout (0.5 s) and a margin
    assert {s for s, _ in readyz} == {503} and {s for s, _ in predict} == {503}, (readyz, predict)
    assert max(t for _, t in readyz) < 1.0 and max(t for _, t in predict) < 1.0, row.notes
    assert max(healthz) < 1.0, row.notes

    # the windows are a replay of the same events: nothing lost or counted twice by the retries
    faults.assert_windows_are_replay(orders, served.lateness_s)
