"""Kafka security settings reach every client etastream builds; no secret is ever shown.

``ETA_KAFKA__*`` becomes librdkafka settings (``SASL_PASSWORD`` → ``sasl.password``) through
``Settings.kafka_config()``; the client builders are checked with recording stand-ins for the
client classes (the configs they are handed, nothing else), and a source scan keeps any new
place that builds a client on those builders. Secrets (a real secret-like value) must not
appear in reprs, JSON dumps, error messages or logs.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from stream_features.settings import Settings
from tests.paths import ROOT

KAFKA_SECRET = "kAfKa-s3cr3t-7f3a9c1e5b"
REDIS_SECRET = "r3d1s-s3cr3t-0d8e2b4f6a"
API_SECRET = "ap1-s3cr3t-9c7e5a3b1d"
EMBEDDED_SECRET = "3mb3dd3d-s3cr3t-5a1c9e"
SECRETS = (KAFKA_SECRET, REDIS_SECRET, API_SECRET, EMBEDDED_SECRET)
SASL = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "etastream",
    "sasl.password": KAFKA_SECRET,
    "ssl.ca.location": "/etc/ssl/certs/ca.pem",
}


@pytest.fixture()
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Settings from the environment, as a service reads them, with every secret set."""
    for key in [k for k in __import__("os").environ if k.startswith("ETA_")]:
        monkeypatch.delenv(key)
    env = {
        "ETA_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "ETA_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "ETA_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "ETA_KAFKA__SASL_USERNAME": "etastream",
        "ETA_KAFKA__SASL_PASSWORD": KAFKA_SECRET,
        "ETA_KAFKA__SSL_CA_LOCATION": "/etc/ssl/certs/ca.pem",
        "ETA_REDIS_URL": f"rediss://etastream:{REDIS_SECRET}@redis.internal:6380/0",
        "ETA_API_KEY": API_SECRET,
        "ETA_EMBEDDED_REDIS_PASSWORD": EMBEDDED_SECRET,
        "ETA_DATA_DIR": str(tmp_path / "data"),
        "ETA_REGISTRY_DIR": str(tmp_path / "models"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret in: {text[:300]}"


def assert_secured(config: dict[str, Any]) -> None:
    assert {k: config.get(k) for k in SASL} == SASL, config


class Built(Exception):
    """Raised by a stand-in client class with the config it was handed."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)
        super().__init__("client built")


def raising(config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    raise Built(config)


class Recording:
    """A stand-in client class that keeps every config it is built with."""

    configs: list[dict[str, Any]]

    def __init__(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        type(self).configs.append(dict(config))


def recording() -> type[Recording]:
    return type("Recorded", (Recording,), {"configs": []})


# --- every builder hands the settings on -------------------------------------------------------


def test_env_names_become_librdkafka_settings(settings: Settings) -> None:
    assert settings.kafka_config() == SASL


@pytest.mark.parametrize("exactly_once", [False, True])
def test_the_stream_workers_consumer_and_producer_are_secured(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, exactly_once: bool
) -> None:
    from predictor.engines import confluent
    from predictor.engines.wiring import confluent_worker
    from tests.serving_fakes import LinearModel, MemoryFeatures

    consumer, producer = recording(), recording()
    monkeypatch.setattr(confluent, "Consumer", consumer)
    monkeypatch.setattr(confluent, "Producer", producer)
    settings = settings.model_copy(update={"exactly_once": exactly_once})

    confluent_worker(settings, MemoryFeatures(), LinearModel)

    (consumer_config,), (producer_config,) = consumer.configs, producer.configs
    assert_secured(consumer_config)
    assert_secured(producer_config)
    assert ("transactional.id" in producer_config) == exactly_once


def test_the_faust_engine_refuses_kafka_settings_it_cannot_pass_on(settings: Settings) -> None:
    from predictor.engines.errors import EngineConfigError
    from predictor.engines.wiring import faust_worker
    from tests.serving_fakes import LinearModel, MemoryFeatures

    with pytest.raises(EngineConfigError, match="does not read ETA_KAFKA__") as caught:
        faust_worker(settings, MemoryFeatures(), LinearModel)
    assert_no_secret(str(caught.value))


def test_topic_creation_is_secured(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_features import kafka_clients

    monkeypatch.setattr(kafka_clients, "AdminClient", raising)
    with pytest.raises(Built) as built:
        kafka_clients.ensure_topics(settings)
    assert_secured(built.value.config)


def test_the_stack_check_of_a_configured_broker_is_secured(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import confluent_kafka.admin

    from stream_features.stack import start_stack

    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", raising)
    with pytest.raises(Built) as built, start_stack(settings):
        pass
    assert_secured(built.value.config)


def test_the_producer_commands_publisher_is_secured(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import confluent_kafka

    from producers import cli
    from stream_features import kafka_clients

    monkeypatch.setattr(kafka_clients, "ensure_topics", lambda _settings: None)
    monkeypatch.setattr(confluent_kafka, "Producer", raising)
    with pytest.raises(Built) as built:
        cli._publisher(settings)
    assert_secured(built.value.config)


def test_eta_tails_consumer_is_secured(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka

    from producers import cli

    monkeypatch.setattr(confluent_kafka, "Consumer", raising)
    with pytest.raises(Built) as built:
        cli._tail_consumer(settings, settings.orders_topic, from_beginning=True)
    assert_secured(built.value.config)


_CLIENT = re.compile(r"\b(Producer|Consumer|AdminClient|AIOKafka\w+|faust\.App)\(")
# a call of a builder, or a parameter named after one (the caller builds it)
_BUILDERS = re.compile(r"\b(producer_config|consumer_config|admin_config|kafka_config)\b")
_REVIEWED = {
    "predictor/engines/faust_app.py": "wiring.faust_worker refuses ETA_KAFKA__* (tested)",
    "producers/publisher.py": "handed producer_config by producers.cli._publisher (tested)",
    "stream_features/stack.py": "wait_for_kafka gets kafka_config() from start_stack (tested)",
}


def test_every_place_that_builds_a_kafka_client_takes_the_settings_builders() -> None:
    """A new client anywhere in the packages must get its config from kafka_clients (or
    Settings.kafka_config()), so ETA_KAFKA__* reaches it, or be reviewed and listed here."""
    building = {
        str(path.relative_to(ROOT))
        for package in ("stream_features", "predictor", "producers")
        for path in (ROOT / package).rglob("*.py")
        if _CLIENT.search(path.read_text())
    }
    unsecured = {
        path
        for path in building - _REVIEWED.keys()
        if not _BUILDERS.search((ROOT / path).read_text())
    }
    assert building >= {"stream_features/kafka_clients.py", "producers/cli.py"}
    assert not unsecured, f"Kafka clients built without the settings' Kafka config: {unsecured}"


# --- secrets are never shown ------------------------------------------------------------------


def test_reprs_and_json_dumps_of_the_settings_hide_every_secret(settings: Settings) -> None:
    shown = [repr(settings), str(settings), settings.model_dump_json()]
    for text in shown:
        assert_no_secret(text)
    assert "'sasl_password': '**********'" in repr(settings)
    assert "'security_protocol': 'SASL_SSL'" in repr(settings)  # the rest stays readable


def test_an_invalid_setting_does_not_echo_the_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ETA_KAFKA__SASL_PASSWORD", KAFKA_SECRET)
    monkeypatch.setenv("ETA_API_KEY", API_SECRET)
    monkeypatch.setenv("ETA_HTTP_PORT", "-1")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert_no_secret(str(caught.value))


def test_an_unreachable_secured_broker_is_reported_without_the_password(
    settings: Settings, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A real librdkafka client with the SASL settings, against a port nobody listens on."""
    from stream_features.errors import ServiceUnavailable
    from stream_features.stack import wait_for_kafka

    caplog.set_level(logging.DEBUG)
    config = {k: v for k, v in settings.kafka_config().items() if k != "ssl.ca.location"}
    with pytest.raises(ServiceUnavailable) as unreachable:
        wait_for_kafka("127.0.0.1:1", timeout_s=1.0, extra=config)
    with pytest.raises(ServiceUnavailable) as refused:  # librdkafka reads the CA file at once
        wait_for_kafka("127.0.0.1:1", timeout_s=1.0, extra=settings.kafka_config())

    assert "Kafka at 127.0.0.1:1 is not answering" in str(unreachable.value)
    assert "settings were refused" in str(refused.value)
    assert "ssl.ca.location" in str(refused.value)
    out, err = capfd.readouterr()
    for text in (str(unreachable.value), str(refused.value), caplog.text, out, err):
        assert_no_secret(text)


def test_an_unreachable_redis_is_reported_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from stream_features.errors import ServiceUnavailable
    from stream_features.stack import free_port, wait_for_redis

    port = free_port()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ServiceUnavailable) as caught:
        wait_for_redis(f"redis://etastream:{REDIS_SECRET}@127.0.0.1:{port}/0", timeout_s=0.5)

    assert f"Redis at redis://etastream:****@127.0.0.1:{port}/0" in str(caught.value)
    assert_no_secret(str(caught.value) + caplog.text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@r:6379/0", "redis://:****@r:6379/0"),
        ("rediss://user:p%40ss@r:6380/1", "rediss://user:****@r:6380/1"),
        ("redis://r:6379/0?password=pw", "redis://r:6379/0?password=****"),
        ("redis://user@r:6379/0", "redis://user@r:6379/0"),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
    ],
)
def test_redacted_hides_a_password_wherever_a_url_holds_it(url: str, shown: str) -> None:
    from stream_features.stack import redacted

    assert redacted(url) == shown
