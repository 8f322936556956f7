"""Hang the broker (SIGSTOP) for 20 s mid-stream, then let it go on (SIGCONT).

A hung broker closes nothing: no client gets an error, requests just wait. The orders come from
``eta produce replay`` of a recorded log at real speed, so the producer side lives through the
hang as a user's replay would. What etastream promises:

* the stream worker neither crashes nor spins (its CPU time over the hang is a small part of
  it); it says once that the broker stopped acknowledging, shows it on ``/metrics``
  (``eta_stream_broker_stalled``), and goes on by itself when the broker answers again;
* ``eta produce replay`` ends with every event acknowledged (exit 0), or reports what failed;
* every order is predicted.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psutil
import pytest

from stream_features.contract import encode
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.integration.worker_helpers import TopicReader, live_orders, worker_env
from tests.reliability.readback import await_predicted, drain, expect_predicted, metric, wait_until
from tests.reliability.services import FaultStack, Spawn
from tests.reliability.tally import Row, tally

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 10_000
SPAN_S = 30.0  # of event time, replayed at real speed
HANG_S = 20.0
REPLAY = ("produce", "replay", "--speed", "1")


def test_broker_hang(served: Settings, faults: FaultStack, spawn: Spawn, row: Row) -> None:
    served = served.model_copy(update={"metrics_port": free_port()})
    worker = spawn(served, "worker")
    worker.wait_for_log("partitions assigned")
    start = datetime.now(UTC) + timedelta(seconds=2)
    step = timedelta(seconds=SPAN_S / ORDERS)
    orders = [
        o.model_copy(update={"created_at": start + i * step})
        for i, o in enumerate(live_orders(ORDERS, "g"))
    ]
    ids = {o.order_id.encode() for o in orders}
    log = faults.data_dir / "orders.jsonl"
    log.write_bytes(b"".join(encode(o) + b"\n" for o in orders))
    reader = TopicReader(served, served.predictions_topic)
    replay_out = (faults.data_dir / "replay.out").open("wb")
    replay = subprocess.Popen(
        [sys.executable, "-c", "from predictor.cli import main; main()", *REPLAY, str(log)],
        env=worker_env(served),
        stdout=replay_out,
        stderr=subprocess.STDOUT,
    )
    try:
        await_predicted(reader, ids, ORDERS // 6, timeout_s=60)
        process = psutil.Process(worker.proc.pid)
        cpu_before = sum(process.cpu_times()[:2])
        faults.pause_broker()
        hung_at = time.monotonic()
        try:
            wait_until(
                lambda: metric(served.metrics_port, "eta_stream_broker_stalled") == 1,
                timeout_s=HANG_S - 2,
                what="the worker showing the stall on /metrics",
            )
            stalled_seen_s = time.monotonic() - hung_at
            wait_until(lambda: time.monotonic() - hung_at >= HANG_S, HANG_S + 1, "the hang")
            cpu_s = sum(process.cpu_times()[:2]) - cpu_before
        finally:
            faults.resume_broker()
        assert replay.wait(120) == 0, (faults.data_dir / "replay.out").read_text()[-2000:]
        expect_predicted(reader, ids, 120, [worker])
        wait_until(
            lambda: metric(served.metrics_port, "eta_stream_broker_stalled") == 0,
            timeout_s=30,
            what="the stall gauge back to 0",
        )
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait(10)
        replay_out.close()

    messages = drain(served, reader, served.predictions_topic)
    reader.close()
    counted = tally(ids, (m.key() for m in messages))
    row.count(ORDERS, counted)
    lines = worker.log_lines()
    stalls = [x for x in lines if "has answered nothing" in str(x.get("msg"))]
    answers = [x for x in lines if x.get("msg") == "the broker answers again"]
    row.notes.update(
        hang_s=HANG_S,
        stall_shown_after_s=round(stalled_seen_s, 1),
        worker_cpu_during_hang_s=round(cpu_s, 2),
        silent_s=answers[0].get("silent_s") if answers else None,
        rebalances=sum(x.get("msg") == "partitions assigned" for x in lines) - 1,
    )
    assert counted.lost == 0, f"never predicted: {sorted(counted.missing)[:5]}"
    assert counted.unexpected == 0
    assert len(stalls) == 1 and len(answers) == 1, [x.get("msg") for x in lines][-20:]
    assert cpu_s < 0.25 * HANG_S, f"the worker used {cpu_s:.1f} s of CPU in a {HANG_S} s hang"
