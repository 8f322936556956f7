"""The compose files and the Dockerfile agree with the code they deploy.

No Docker engine is needed: the files are parsed and checked against ``Settings`` (every ``ETA_*``
variable is a real setting with a valid value), the topics ``eta`` expects, and the port
``eta serve`` listens on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stream_features.kafka_clients import TOPIC_CONFIG, topic_config, topic_names
from stream_features.redis_client import is_cluster_url
from stream_features.settings import Settings
from tests.paths import ROOT

BASE = ROOT / "docker-compose.yml"
SECURE = ROOT / "docker-compose.secure.yml"
CLUSTER = ROOT / "docker-compose.cluster.yml"
OUR_SERVICES = ("worker", "api", "monitor")
SECRETS = {"ETA_REDIS_PASSWORD": "s3cret-redis", "ETA_API_KEY": "s3cret-key"}

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``.

    >>> interpolate("redis://:${PW:?set PW}@redis/0 ${TAG:-local} $$HOME", {"PW": "p"})
    'redis://:p@redis/0 local $HOME'
    """

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?") and not value:
            raise KeyError(f"compose would stop: {name} unset ({arg})")
        return value or ""

    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(substitute, part) for part in parts)


def load(*files: Path) -> dict[str, dict[str, Any]]:
    """Services of the files layered like ``docker compose -f a -f b``, for the keys we check."""
    services: dict[str, dict[str, Any]] = {}
    for path in files:
        for name, spec in yaml.safe_load(path.read_text())["services"].items():
            merged = services.setdefault(name, {})
            for key, value in spec.items():
                if key == "environment" and isinstance(value, dict):
                    merged.setdefault("environment", {}).update(value)
                else:
                    merged[key] = value
    return services


def environment(service: Mapping[str, Any], env: Mapping[str, str] = SECRETS) -> dict[str, str]:
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "write environment as a mapping"
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container with exactly these ETA_* variables would read."""
    for key in list(os.environ):
        if key.startswith("ETA_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("ETA_"):
            monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    return load(BASE)


@pytest.fixture(scope="module")
def secure() -> dict[str, dict[str, Any]]:
    return load(BASE, SECURE)


def test_every_service_is_there(base: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "redis", "topic-init", *OUR_SERVICES} <= base.keys()


def test_kafka_is_the_official_image_in_kraft_mode(base: dict[str, dict[str, Any]]) -> None:
    kafka = base["kafka"]
    env = environment(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "zookeeper" not in BASE.read_text().lower()
    assert "healthcheck" in kafka


def test_kafka_listeners_are_consistent(base: dict[str, dict[str, Any]]) -> None:
    env = environment(base["kafka"])
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]

    assert listeners.keys() <= protocols.keys()
    assert controller in listeners and controller not in advertised
    assert advertised.keys() == listeners.keys() - {controller}
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert len(advertised) >= 2, "an internal listener for containers, an external one for the host"
    # our services bootstrap through an advertised listener that resolves on the network
    bootstrap = environment(base["worker"])["ETA_KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap in advertised.values()
    assert advertised["EXTERNAL"].endswith(":9092")
    assert any(port.endswith(":9092:9092") for port in base["kafka"]["ports"])


def test_redis_persists_with_aof_on_a_volume(base: dict[str, dict[str, Any]]) -> None:
    redis = base["redis"]
    assert redis["image"] == "redis:7"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


@pytest.mark.parametrize(
    "files", [(BASE,), (BASE, SECURE), (BASE, CLUSTER)], ids=["base", "secure", "cluster"]
)
@pytest.mark.parametrize("name", OUR_SERVICES)
def test_every_eta_variable_is_a_setting_with_a_valid_value(
    files: tuple[Path, ...], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(load(*files)[name])
    eta = {key: value for key, value in env.items() if key.startswith("ETA_")}
    assert eta, f"{name} sets no ETA_* variable"
    for key in eta:
        field, _, nested = key.removeprefix("ETA_").lower().partition("__")
        assert field in Settings.model_fields, f"{key} is not a Settings field"
        if nested:
            assert Settings.model_fields[field].annotation == dict[str, str], key

    settings = settings_from(eta, monkeypatch)  # raises on a value Settings rejects

    assert settings.kafka_bootstrap_servers == "kafka:19092"
    assert settings.redis_url_value() == eta["ETA_REDIS_URL"]
    assert str(settings.registry_dir) == "/models"
    assert settings.kafka_config() == {"client.id": "etastream"}


def test_cluster_variant_runs_three_persistent_masters_every_service_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = load(BASE, CLUSTER)
    nodes = [f"redis-{i}" for i in (1, 2, 3)]
    for node in nodes:
        command = services[node]["command"]
        flags = dict(zip(command[1::2], command[2::2], strict=True))
        assert command[0] == "redis-server" and services[node]["image"] == "redis:7"
        assert flags["--cluster-enabled"] == "yes" and flags["--appendonly"] == "yes"
        assert flags["--cluster-announce-hostname"] == node  # what clients are told to dial
        assert flags["--maxmemory-policy"] == "noeviction"
        assert any(volume.endswith(":/data") for volume in services[node]["volumes"])
    init = services["redis-cluster-init"]
    assert set(init["depends_on"]) == set(nodes)
    assert "--cluster create" in init["command"][0]
    for name in OUR_SERVICES:
        env = environment(services[name])
        assert is_cluster_url(env["ETA_REDIS_URL"]), name
        assert urlsplit(env["ETA_REDIS_URL"]).hostname in nodes
        condition = services[name]["depends_on"]["redis-cluster-init"]["condition"]
        assert condition == "service_completed_successfully", name


def test_topic_init_creates_the_settings_topics_with_explicit_configs(
    base: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    init = base["topic-init"]
    env = environment(init)
    defaults = {f.default for name, f in Settings.model_fields.items() if name.endswith("_topic")}
    worker = settings_from(environment(base["worker"]), monkeypatch)

    assert env["TOPICS"].split() == topic_names(worker)
    assert set(env["TOPICS"].split()) == defaults
    assert int(env["PARTITIONS"]) == worker.topic_partitions
    assert dict(c.split("=", 1) for c in env["TOPIC_CONFIGS"].split()) == TOPIC_CONFIG
    compression = dict(c.split("=", 1) for c in env["TOPIC_COMPRESSION"].split())
    assert compression == {
        t: topic_config(worker, t)["compression.type"] for t in topic_names(worker)
    }
    script = "\n".join(init["command"])
    assert "kafka-topics.sh" in script and "--create --if-not-exists" in script
    assert "$${TOPICS}" in script and "$${TOPIC_CONFIGS}" in script
    assert "$${TOPIC_COMPRESSION}" in script and "compression.type=$${codec[$${topic}]" in script
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in OUR_SERVICES:
        condition = base[name]["depends_on"]["topic-init"]["condition"]
        assert condition == "service_completed_successfully"


def test_api_publishes_the_port_eta_serve_listens_on(
    base: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = base["api"]
    settings = settings_from(environment(api), monkeypatch)

    assert settings.http_host == "0.0.0.0"
    container_ports = [int(str(port).split(":")[-1].split("/")[0]) for port in api["ports"]]
    assert container_ports == [settings.http_port]
    assert f":{settings.http_port}/healthz" in " ".join(api["healthcheck"]["test"])


@pytest.mark.parametrize(
    ("name", "port"), [("worker", "metrics_port"), ("monitor", "monitor_metrics_port")]
)
def test_prometheus_endpoints_are_reachable_inside_the_network(
    base: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, name: str, port: str
) -> None:
    """The metrics servers bind loopback unless told otherwise: in a container that would be
    a port nobody can scrape."""
    service = base[name]
    settings = settings_from(environment(service), monkeypatch)
    assert settings.metrics_host == "0.0.0.0"
    assert [int(str(p)) for p in service["expose"]] == [getattr(settings, port)]


def test_worker_can_be_scaled(base: dict[str, dict[str, Any]]) -> None:
    worker = base["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"] == ["predict", "stream"]


def test_services_share_the_model_registry(base: dict[str, dict[str, Any]]) -> None:
    mounts = {name: set(base[name]["volumes"]) for name in OUR_SERVICES}
    assert len(set.intersection(*mounts.values())) == 1
    (mount,) = set.intersection(*mounts.values())
    assert mount.endswith(":/models")
    assert interpolate(mount, {}).split(":")[0] in yaml.safe_load(BASE.read_text())["volumes"]


def test_secure_variant_needs_a_redis_password_and_an_api_key(
    secure: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = secure["redis"]
    redis_env = environment(redis)
    assert redis_env["REDIS_PASSWORD"] == SECRETS["ETA_REDIS_PASSWORD"]
    command = " ".join(redis["command"])
    assert '--requirepass "$${REDIS_PASSWORD}"' in command
    assert "--appendonly yes" in command
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])

    for name in OUR_SERVICES:
        url = urlsplit(environment(secure[name])["ETA_REDIS_URL"])
        assert url.password == SECRETS["ETA_REDIS_PASSWORD"], name
        assert url.hostname == "redis"
    api = settings_from(environment(secure["api"]), monkeypatch)
    assert api.api_key is not None
    assert api.api_key.get_secret_value() == SECRETS["ETA_API_KEY"]

    with pytest.raises(KeyError, match="ETA_REDIS_PASSWORD"):
        environment(secure["worker"], env={})


def test_dockerfile_runs_eta_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(maxsplit=1) for line in text.splitlines() if line[:1].isupper()]
    by_name: dict[str, list[str]] = {}
    for name, *rest in instructions:
        by_name.setdefault(name, []).append(rest[0] if rest else "")

    assert by_name["FROM"] == ["python:3.11-slim"]
    assert by_name["ENTRYPOINT"] == ['["eta"]']
    assert by_name["USER"][-1] not in ("root", "0")
    assert any("pip install ." in run for run in by_name["RUN"])
