"""``eta serve`` as a process, over real HTTP: the key, the body limit, a prediction, a stop.

Limits are tested here over a socket as well as in process, because what a server does with
an oversized upload (read it? reset the connection?) only shows over a real one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from stream_features.contract import DeliveryPrediction
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.feature_events import order
from tests.integration.api_helpers import model_settings
from tests.integration.worker_helpers import worker_env

pytestmark = pytest.mark.integration

KEY = "test-key-0123456789abcdef0123456789"
TEN_MB = 10 * 1024 * 1024


@pytest.fixture()
def server(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    served = model_settings(settings, tmp_path).model_copy(
        update={"api_key": KEY, "http_port": free_port(), "http_host": "127.0.0.1"}
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from predictor.cli import main; main()", "serve"],
        env=worker_env(served),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{served.http_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", headers={"X-API-Key": KEY}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_eta_serve_answers_keeps_out_and_limits(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, proc = server
    new = order("served-1", datetime.now(UTC))
    with httpx.Client(base_url=base, timeout=30) as client:
        alive = client.get("/healthz")
        anonymous = client.post("/v1/predictions", content=new.model_dump_json())
        scored = client.post(
            "/v1/predictions",
            content=new.model_dump_json(),
            headers={"Authorization": f"Bearer {KEY}"},
        )
        declared = client.post("/v1/predictions", content=b" " * TEN_MB, headers={"X-API-Key": KEY})

        def chunks() -> Iterator[bytes]:
            for _ in range(TEN_MB // 65536):
                yield b" " * 65536

        streamed = client.post("/v1/predictions", content=chunks(), headers={"X-API-Key": KEY})
        after = client.get("/readyz", headers={"X-API-Key": KEY})

    assert alive.status_code == 200
    assert anonymous.status_code == 401 and KEY not in anonymous.text
    assert scored.status_code == 200, scored.text
    assert DeliveryPrediction.model_validate_json(scored.content).mode == "online"
    assert declared.status_code == 413
    assert f"of {TEN_MB} bytes is over the 2000000-byte limit" in declared.json()["detail"]
    assert streamed.status_code == 413
    assert after.status_code == 200  # still serving
    assert "server" not in scored.headers  # no version banner

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
