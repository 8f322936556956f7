"""SIGKILL the only worker mid-stream, start it again: every order is predicted, and the
feature state the successor recovered equals the reference replay.

At-least-once: the killed worker committed only what the broker had acknowledged, so its
successor starts at the last commit and reads again what came after (those are the duplicates);
nothing between the last commit and the kill is skipped. The successor loads its partitions'
state from Redis, where the killed worker wrote it behind before each commit; what it reads
again is deduplicated, so no window counts an order twice.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

from stream_features.redis_client import redis_client
from stream_features.redis_windows import RedisFeatureSource
from stream_features.replay_state import ReplayState
from stream_features.settings import Settings
from tests.integration.worker_helpers import TopicReader, live_orders
from tests.reliability.readback import await_predicted, drain, expect_predicted
from tests.reliability.services import Spawn
from tests.reliability.tally import Row, tally
from tests.reliability.traffic import stream_orders

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 20_000


def test_sigkill_restart(served: Settings, spawn: Spawn, row: Row) -> None:
    orders = live_orders(ORDERS, "k")
    ids = {o.order_id.encode() for o in orders}
    reader = TopicReader(served, served.predictions_topic)
    first = spawn(served, "first")
    first.wait_for_log("partitions assigned")
    producer = stream_orders(served, orders, pause_s=0.15)
    await_predicted(reader, ids, ORDERS // 4, timeout_s=60)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    read_at_kill = await_predicted(reader, ids, 0, timeout_s=0)
    assert read_at_kill < ORDERS, "the stream was over before the kill"

    restarted = spawn(served, "restarted")
    producer.join(60)
    expect_predicted(reader, ids, 120, [first, restarted])
    assert restarted.stop(signal.SIGTERM) == 0
    counted = tally(ids, (m.key() for m in drain(served, reader, served.predictions_topic)))
    reader.close()
    row.count(ORDERS, counted)
    row.notes["predictions_read_at_kill"] = read_at_kill
    assert counted.lost == 0, f"never predicted: {sorted(counted.missing)[:5]}"
    assert counted.unexpected == 0

    reference = ReplayState(lateness_s=served.lateness_s)
    for order in orders:
        reference.apply(order)
    probes = live_orders(200, "probe")
    client = redis_client(served.redis_url_value() or "")
    recovered = RedisFeatureSource(client, lateness_s=served.lateness_s).read(probes)
    client.close()
    expected = reference.read(probes)
    np.testing.assert_array_equal(recovered.values, expected.values)
    np.testing.assert_array_equal(recovered.freshness_s, expected.freshness_s)
