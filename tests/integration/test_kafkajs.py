"""kafkajs, Node's most used Kafka client, reads what the stream worker writes (issue #22).

The worker (its own producer config, ``wiring.confluent_worker``) scores live orders and
dead-letters poison; kafkajs from npm (installed once into pytest's cache) reads the
predictions and DLQ topics from the beginning, and every record must match the contract's JSON
Schema. kafkajs decodes gzip and uncompressed batches only; with lz4 (etastream's old default)
it crashes, which the last test shows so that this one can be trusted to notice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]  # types-jsonschema not required
import pytest

from predictor.engines.wiring import WORKER_WRITES, redis_features
from stream_features.contract import encode, json_schemas
from stream_features.kafka_clients import ensure_topics, producer_codec
from stream_features.settings import Codec, Settings
from tests.integration.worker_helpers import TopicReader, live_orders, produce, running_worker
from tests.serving_fakes import LinearModel

pytestmark = pytest.mark.integration

KAFKAJS = "kafkajs@2.2.4"
READER = Path(__file__).with_name("kafkajs_read.js")
_OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|ENETUNREACH")


@pytest.fixture(scope="session")
def node_modules(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``node_modules`` holding kafkajs: npm installs it once, into pytest's cache directory."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail("node and npm (Node 20) are needed to run kafkajs; install nodejs and npm")
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    name = KAFKAJS.replace("@", "-")
    root = cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name)
    if not (root / "node_modules" / "kafkajs" / "package.json").exists():
        # npm's own cache first; without a network one retry, not npm's minute of them
        args = [
            *(npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefer-offline"),
            *(
                "--fetch-retries=1",
                "--fetch-retry-mintimeout=2000",
                "--fetch-retry-maxtimeout=5000",
            ),
            *("--prefix", str(root)),
        ]
        done = subprocess.run(
            [*args, KAFKAJS], capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            out = (done.stdout + done.stderr)[-2000:]
            offline = _OFFLINE.search(out)
            if offline:
                pytest.skip(f"npm cannot reach its registry ({offline[0]}) to install {KAFKAJS}")
            pytest.fail(f"npm install {KAFKAJS} failed (exit {done.returncode}):\n{out}")
    return root / "node_modules"


def read_with_kafkajs(
    node_modules: Path, settings: Settings, topic: str, count: int, timeout_s: float = 60.0
) -> tuple[int, list[dict[str, Any]]]:
    """(exit code, printed lines) of kafkajs reading ``count`` records of ``topic``."""
    done = subprocess.run(
        [
            "node",
            str(READER),
            settings.kafka_bootstrap_servers or "",
            topic,
            str(count),
            str(int(timeout_s * 1000)),
        ],
        env={**os.environ, "NODE_PATH": str(node_modules)},
        capture_output=True,
        text=True,
        timeout=timeout_s + 30,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode in (0, 3), f"kafkajs exit {done.returncode}: {done.stderr[-2000:]}"
    return done.returncode, lines


def validator(message: str) -> Callable[[Any], None]:
    schema = json_schemas()[message]
    check = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    validate: Callable[[Any], None] = check.validate
    return validate


def run_worker(settings: Settings, key_prefix: str, n: int) -> tuple[list[str], list[bytes]]:
    """``n`` live orders and two poison records through the worker; returns the order ids and
    the poison keys once every prediction and dead letter is on its topic."""
    ensure_topics(settings)
    orders = live_orders(n, "kjs")
    poison = [b"p1", b"p2"]
    produce(
        settings,
        [
            *((settings.orders_topic, o.store_id.encode(), encode(o)) for o in orders),
            (settings.orders_topic, poison[0], b"\xff\xfe not json"),
            (settings.orders_topic, poison[1], b'{"type": "OrderCreated", "order_id": 5}'),
        ],
    )
    preds = TopicReader(settings, settings.predictions_topic)
    dlq = TopicReader(settings, settings.dlq_topic)
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    with running_worker(settings, features, LinearModel(version="4")):
        assert len(preds.read_until(lambda m: len(m) >= n, timeout_s=60)) == n
        assert len(dlq.read_until(lambda m: len(m) >= len(poison), timeout_s=30)) == 2
    preds.close()
    dlq.close()
    return [o.order_id for o in orders], poison


@pytest.mark.parametrize("codec", ["gzip", "none"])
def test_kafkajs_reads_every_prediction_and_dead_letter_the_worker_writes(
    settings: Settings, key_prefix: str, node_modules: Path, codec: Codec
) -> None:
    """gzip is the default of both topics; none is the other codec every client reads."""
    if codec != "gzip":
        settings = settings.model_copy(
            update={"predictions_compression": codec, "dlq_compression": codec}
        )
    assert producer_codec(settings, WORKER_WRITES) == codec
    order_ids, poison = run_worker(settings, key_prefix, n=200)

    code, lines = read_with_kafkajs(
        node_modules, settings, settings.predictions_topic, len(order_ids)
    )
    assert code == 0, lines[-1:]
    check_prediction = validator("DeliveryPrediction")
    for line in lines:
        prediction = json.loads(line["value"])
        check_prediction(prediction)
        assert line["key"] == prediction["order_id"]
        assert prediction["model_version"] == "4"
    assert sorted(line["key"] for line in lines) == sorted(order_ids)

    code, lines = read_with_kafkajs(node_modules, settings, settings.dlq_topic, len(poison))
    assert code == 0, lines[-1:]
    check_letter = validator("DeadLetter")
    for line in lines:
        check_letter(json.loads(line["value"]))
    assert sorted(line["key"] for line in lines) == sorted(p.decode() for p in poison)


def test_kafkajs_cannot_read_lz4_which_is_why_it_is_not_the_default(
    settings: Settings, key_prefix: str, node_modules: Path
) -> None:
    settings = settings.model_copy(
        update={"predictions_compression": "lz4", "dlq_compression": "lz4"}
    )
    order_ids, _ = run_worker(settings, key_prefix, n=20)
    code, lines = read_with_kafkajs(
        node_modules, settings, settings.predictions_topic, len(order_ids)
    )
    assert code == 3 and "LZ4 compression not implemented" in lines[-1]["crash"], lines[-3:]
