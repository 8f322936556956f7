"""A paused Redis holds the requests that need it, never the API's event loop.

The test's own redis-server is stopped (SIGSTOP: connections stay open and nothing answers)
while prediction requests wait on it. Because the handlers await their round trips on the
asyncio client, ``/healthz`` keeps answering within 50 ms meanwhile; the waiting requests get
their 503 within ``ETA_API_REDIS_TIMEOUT_S``; and once Redis goes on, the API is ready again by
itself.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn

from predictor.api import ApiConfig, create_app
from predictor.api.loop_redis import api_redis
from stream_features.stack import free_port, redis_server_args, wait_for_redis
from tests.api_fakes import FixedModel, Models, order_json
from tests.polling import wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0  # the API's Redis timeout here: long enough to probe /healthz under it
HEALTHZ_S = 0.05
WAITING = 4  # prediction requests waiting on the paused Redis at once


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own, to pause without touching the session's."""
    port = free_port()
    proc = subprocess.Popen(
        redis_server_args(port, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for_redis(url)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


@pytest.fixture()
def served(own_redis: tuple[str, subprocess.Popen[bytes]]) -> Iterator[str]:
    """The app on a real server (uvicorn, in a thread) over the test's Redis; its base URL."""
    url, _ = own_redis
    client, async_client = api_redis(url, TIMEOUT_S)
    app = create_app(
        ApiConfig(max_inflight=WAITING + 4), client, Models(FixedModel()), async_client=async_client
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout_s=20, what="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        client.close()


def _post(base: str, body: bytes) -> tuple[int, float]:
    started = time.monotonic()
    status = httpx.post(f"{base}/v1/predictions", content=body, timeout=10).status_code
    return status, time.monotonic() - started


def test_healthz_answers_at_once_while_requests_wait_on_a_paused_redis(
    own_redis: tuple[str, subprocess.Popen[bytes]], served: str
) -> None:
    _, proc = own_redis
    body = httpx.Request("POST", "/", json=order_json("paused")).content
    with httpx.Client(base_url=served, timeout=5) as client:
        assert client.get("/readyz").status_code == 200
        assert _post(served, body)[0] == 200  # the read works, and its connection is made

        proc.send_signal(signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(WAITING) as pool:
                waiting: list[Future[tuple[int, float]]] = [
                    pool.submit(_post, served, body) for _ in range(WAITING)
                ]
                healthz: list[float] = []
                while not all(f.done() for f in waiting):  # probe for as long as they wait
                    started = time.monotonic()
                    assert client.get("/healthz").status_code == 200
                    took = time.monotonic() - started
                    if not all(f.done() for f in waiting):  # it overlapped a waiting request
                        healthz.append(took)
                answers = [f.result() for f in waiting]
        finally:
            proc.send_signal(signal.SIGCONT)

        assert len(healthz) >= 10, f"too few probes overlapped the wait: {healthz}"
        assert max(healthz) < HEALTHZ_S, f"/healthz took {max(healthz):.3f} s (of {healthz})"
        assert {status for status, _ in answers} == {503}, answers
        assert max(took for _, took in answers) < TIMEOUT_S + 1.0, answers
        wait_until(
            lambda: client.get("/readyz").status_code == 200,
            timeout_s=10,
            what="the API ready again once Redis goes on",
        )
        assert _post(served, body)[0] == 200
