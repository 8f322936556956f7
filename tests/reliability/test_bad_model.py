"""A corrupt model, then one of another feature registry, put at ``production`` by mistake.

``eta models promote`` refuses both (it loads what it would point at). The scenario moves the
alias past that check, as a hand-edited pointer or another tool would, while a worker and
``eta serve`` run on version 1. What etastream promises: every service refuses to load the
bad version, keeps serving the one it had, says why in its log and counts it in
``eta_model_load_failures_total``; no prediction carries a bad version; nothing is lost.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import httpx
import pytest

from predictor.models.artifact import MODEL_FILE, read_metadata, write_artifact
from predictor.models.registry import Registry
from stream_features.contract import DeliveryPrediction
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.integration.worker_helpers import TopicReader, live_orders, produce_orders, worker_env
from tests.reliability.readback import drain, expect_predicted, metric, wait_until
from tests.reliability.services import FaultStack, ServeProcess, Spawn
from tests.reliability.tally import Row, tally

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAILURES = "eta_model_load_failures_total"
CLI = (sys.executable, "-c", "from predictor.cli import main; main()")


def _corrupt_copy(registry: Registry, name: str, version: str) -> None:
    """Version 1 again as ``version``, with one byte of its model flipped after checksumming."""
    target = registry.root / name / version
    shutil.copytree(registry.path(name, "1"), target)
    model = target / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))


def _foreign_copy(registry: Registry, name: str, version: str) -> None:
    """Version 1 again as ``version``, checksummed, but trained under other feature rules."""
    source = registry.path(name, "1")
    meta = read_metadata(source)
    write_artifact(
        registry.root / name / version,
        (source / MODEL_FILE).read_text(),
        {**meta, "version": version, "feature_registry_hash": "0123456789abcdef"},
    )


def _versions(messages: list) -> set[str]:  # type: ignore[type-arg]  # confluent Message
    return {DeliveryPrediction.model_validate_json(m.value()).model_version for m in messages}


def test_bad_model(served: Settings, faults: FaultStack, spawn: Spawn, row: Row) -> None:
    registry_dir = faults.data_dir / "models"
    shutil.copytree(served.registry_dir, registry_dir)  # the session's registry stays as it is
    served = served.model_copy(
        update={
            "registry_dir": registry_dir,
            "metrics_port": free_port(),
            "http_port": free_port(),
            "http_host": "127.0.0.1",
        }
    )
    client = faults.client()
    registry = Registry(registry_dir, client)
    name = served.model_name
    worker = spawn(served, "worker")
    api = ServeProcess(served, faults.data_dir / "serve.log")
    reader = TopicReader(served, served.predictions_topic)
    probe = live_orders(1, "probe")[0].model_dump_json()
    sent: set[bytes] = set()
    try:
        api.wait_ready()
        for round_, (version, make) in enumerate((("2", _corrupt_copy), ("3", _foreign_copy))):
            make(registry, name, version)
            before = registry.aliases(name)["production"]
            refused = subprocess.run(
                [*CLI, "models", "promote", version, "--stage", "production"],
                env=worker_env(served),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert registry.aliases(name)["production"] == before  # refused: nothing moved
            registry._move(name, "production", lambda _c, _s, v=version: v, "promote")  # past it
            wanted = round_ + 1

            def worker_refused(n: int = wanted) -> bool:
                return metric(served.metrics_port, FAILURES) >= n

            def api_refused(n: int = wanted) -> bool:
                return _api_metric(api.base) >= n

            wait_until(worker_refused, 30, f"the worker refusing version {version}")
            wait_until(api_refused, 30, f"the API refusing version {version}")
            answer = httpx.post(f"{api.base}/v1/predictions", content=probe, timeout=5)
            assert answer.status_code == 200 and answer.json()["model_version"] == "1"
            orders = live_orders(500, f"bad{version}-")
            produce_orders(served, orders)
            sent |= {o.order_id.encode() for o in orders}
            expect_predicted(reader, sent, 60, [worker])
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        api.stop()
        client.close()
    messages = drain(served, reader, served.predictions_topic)
    reader.close()
    counted = tally(sent, (m.key() for m in messages))
    row.count(len(sent), counted)
    logged = [line.get("msg", "") for line in worker.log_lines()]
    refusals = [m for m in logged if "could not load" in str(m)]
    row.notes.update(
        worker_refusals_logged=len(refusals), versions_served=sorted(_versions(messages))
    )
    assert counted.lost == 0 and counted.unexpected == 0
    assert _versions(messages) == {"1"}, "a prediction carries a bad version"
    assert any("checksum" in str(m) or "SHA-256" in str(m) for m in refusals), refusals
    assert any("feature" in str(m) for m in refusals), refusals


def _api_metric(base: str) -> float:
    page = httpx.get(f"{base}/metrics", timeout=5).text
    for line in page.splitlines():
        if line.startswith(FAILURES + " "):
            return float(line.split()[1])
    return 0.0
