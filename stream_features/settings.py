"""One settings object for every etastream process (env prefix ``ETA_``).

Read once in a command's entry point and passed down as plain values: the pure core never sees
it. ``None`` for the Kafka or Redis address means "not configured": ``eta up`` and ``eta demo``
then start the embedded ones (see ``stack.py``), every other command asks for the address.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_serializer
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Codec", "Settings", "masked_kafka"]

Codec = Literal["none", "gzip", "snappy", "lz4", "zstd"]
"""A Kafka compression codec (librdkafka's ``compression.type`` values)."""

_SECRET_KAFKA_KEY = re.compile(r"pass|secret|token|key|jaas|cred|oauthbearer_config", re.I)


def masked_kafka(kafka: dict[str, str]) -> dict[str, str]:
    """``kafka`` with the values of secret-looking keys hidden, for reprs and dumps.

    >>> masked_kafka({"security_protocol": "SASL_SSL", "sasl_password": "s3cret"})
    {'security_protocol': 'SASL_SSL', 'sasl_password': '**********'}
    """
    return {k: "**********" if _SECRET_KAFKA_KEY.search(k) else v for k, v in kafka.items()}


class Settings(BaseSettings):
    """Every knob, with its default; each is ``ETA_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="ETA_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    # --- services -------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        None,
        description="host:port list of Kafka brokers; unset: `eta up` / `eta demo` start the "
        "embedded broker, other commands ask for it",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="redis:// or rediss:// URL of one Redis, redis+cluster:// or "
        "rediss+cluster:// of a node of a Redis Cluster (docs/deployment.md); unset: `eta up` / "
        "`eta demo` start an embedded redis-server, other commands ask for it",
    )
    kafka: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka settings for every client, e.g. ETA_KAFKA__SECURITY_PROTOCOL"
        "=SASL_SSL becomes security.protocol (underscores turn into dots)",
    )
    data_dir: Path = Field(
        Path(".eta"), description="embedded stack state: Redis AOF, logs, generated files"
    )
    embedded_kafka_port: int = Field(0, description="embedded broker port; 0 picks a free one")
    embedded_redis_port: int = Field(0, description="embedded Redis port; 0 picks a free one")
    embedded_redis_password: SecretStr | None = Field(
        None,
        description="the embedded Redis then admits only user 'etastream' with this password; "
        "a URL-safe one (openssl rand -hex 32) lets `eta up` print a ready export line",
    )

    # --- topics ---------------------------------------------------------------------------
    orders_topic: str = "orders"
    dasher_events_topic: str = "dasher-events"
    deliveries_topic: str = "deliveries"
    predictions_topic: str = "delivery-eta-predictions"
    dlq_topic: str = "orders.dlq"
    shadow_topic: str = Field(
        "delivery-eta-shadow",
        description="the challenger's predictions next to the champion's (ETA_SHADOW_STAGE); "
        "written best-effort, at most once",
    )
    monitoring_topic: str = "model-monitoring"
    source_compression: Codec = Field(
        "lz4",
        description="codec of `eta produce` (the orders, dasher-events and deliveries "
        "topics): lz4 costs least CPU, and etastream's workers read every codec",
    )
    predictions_compression: Codec = Field(
        "gzip",
        description="codec of the predictions topic; gzip and none are read by every Kafka "
        "client as it comes (kafkajs has no lz4, snappy or zstd without a plugin)",
    )
    dlq_compression: Codec = Field(
        "gzip",
        description="codec of the dead-letter topic; a producer writing it and another topic "
        "of a different codec sends gzip (none if either is none): see docs/streaming.md",
    )
    monitoring_compression: Codec = Field(
        "gzip", description="codec of the monitoring topic (`eta monitor`'s summaries)"
    )
    topic_partitions: int = Field(4, ge=1, description="partitions for topics etastream creates")
    topic_replication: int = Field(1, ge=1, description="replication factor for created topics")
    consumer_group: str = "etastream-predictor"
    session_timeout_ms: int = Field(6000, ge=1000, description="consumer group session timeout")
    max_message_bytes: int = Field(
        1_000_000, ge=1024, description="larger messages go to the DLQ before any parsing"
    )

    # --- stream worker --------------------------------------------------------------------
    batch_max_events: int = Field(1000, ge=1, description="micro-batch size bound")
    batch_max_wait_ms: int = Field(5, ge=0, description="micro-batch time bound")
    engine: Literal["confluent", "faust"] = "confluent"
    exactly_once: bool = Field(False, description="use Kafka transactions (read-process-write)")
    lateness_s: int = Field(
        300,
        ge=0,
        description="events older than this behind their entity's "
        "newest event are counted and left out of windows",
    )
    stream_redis_timeout_s: float = Field(
        5.0,
        gt=0,
        description="the stream worker's Redis timeout: a hung Redis fails the batch after "
        "this, and it is rewound and retried with backoff",
    )
    align_margin_s: int = Field(
        60,
        ge=0,
        description="the confluent worker holds back records (and pauses their partitions) "
        "more than this ahead in event time of the slowest partition still delivering, so a "
        "backlog is applied in event-time order; keep it under lateness_s; 0 off",
    )
    align_idle_ms: int = Field(
        1000,
        ge=0,
        description="a partition that delivered nothing for this long no longer holds the "
        "others back (as Kafka Streams' max.task.idle.ms)",
    )
    dedup_ttl_s: int = Field(
        2 * 86400,
        ge=60,
        description="how long Redis keeps a partition's state (dedup ids, outstanding orders) "
        "with no write, at least; in memory an id is kept for lateness_s behind its entity, "
        "and anything older is late rather than a duplicate",
    )
    entity_ttl_s: int = Field(7 * 86400, ge=60, description="idle entity state expires after this")
    max_future_skew_s: int = Field(
        3600, ge=0, description="events stamped further than this in the future are rejected"
    )
    contract_strict: bool = Field(
        False,
        description="reject events with a data-quality finding (busy > on-shift dashers, a "
        "missing optional attribute, ...) instead of keeping and counting them; docs/contract.md",
    )
    metrics_port: int = Field(9108, ge=0, description="Prometheus port of the stream worker; 0 off")
    metrics_host: str = Field(
        "127.0.0.1",
        description="address the Prometheus endpoints (worker, monitor) bind; 0.0.0.0 inside a "
        "container",
    )
    prediction_ttl_s: int = Field(
        0,
        ge=0,
        description="the worker caches each prediction in Redis this long, for the API's "
        "GET /v1/predictions/{id}; 0 off (it costs the worker a third of its throughput and "
        "orders/s × this × 500 B of memory)",
    )
    stream_include_features: bool = Field(
        False, description="write the model inputs into each streaming prediction (features)"
    )
    stream_range: bool = Field(
        True,
        description="give each streaming prediction the model's p10-p90 range when it has "
        "one (scores its two bound models too: docs/models.md has the cost)",
    )
    stream_explain: bool = Field(
        False,
        description="give each streaming prediction its reasons (explanation: every input's "
        "contribution in s and the top five as text), as POST /v1/predictions?explain=true; "
        "LightGBM models in seconds only, and it costs (docs/models.md)",
    )
    stream_feature_names: tuple[str, ...] = Field(
        (),
        description="with stream_include_features, only these model inputs (a JSON list); "
        "empty: all of them, which `eta retrain` needs",
    )

    # --- models ---------------------------------------------------------------------------
    registry_dir: Path = Field(Path("models"), description="model registry root")
    model_name: str = Field("eta", description="the model name services serve")
    serve_stage: str = Field("production", description="the registry alias services follow")
    scoring: Literal["auto", "lightgbm", "compiled"] = Field(
        "auto", description="compiled (lleaves) when available, else LightGBM's predict"
    )
    model_poll_s: float = Field(0.5, gt=0, description="how often services check the alias")
    shadow_stage: str | None = Field(
        None,
        description="the stream worker (and `eta serve`, given a broker) also scores every "
        "batch with the model at this alias (e.g. staging) and writes both to shadow_topic, "
        "never serving it; unset: off",
    )
    promote_min_orders: int = Field(
        500,
        ge=1,
        description="`eta models promote-if-better` promotes a challenger only on at least this "
        "many joined live orders scored by both models",
    )

    # --- HTTP -----------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0)
    api_key: SecretStr | None = Field(
        None,
        description="when set, every route but /healthz "
        "needs 'Authorization: Bearer <key>' or 'X-API-Key'",
    )
    max_request_bytes: int = Field(2_000_000, ge=1024)
    api_redis_timeout_s: float = Field(
        0.5,
        gt=0,
        description="the HTTP API's Redis timeout: with Redis hung, a request gets its 503 and "
        "/readyz its answer after this (an online read takes well under a millisecond)",
    )
    api_max_inflight: int = Field(
        8,  # measured: docs/reliability.md, api_overload (16 let the accepted p99 reach 3.5x)
        ge=1,
        description="requests under /v1/ the API serves at once (per process); one more is "
        "answered 503 with Retry-After at once instead of queueing",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins the HTTP API allows (CORS), a JSON list such as "
        '["https://ops.example.com"]; empty: none',
    )

    # --- batch prediction -----------------------------------------------------------------
    batch_slots: int = Field(4, ge=1, description="hour slots ahead scored by `eta predict batch`")
    batch_out_dir: Path = Field(Path("batch_predictions"))

    # --- monitoring -----------------------------------------------------------------------
    psi_alert: float = Field(0.2, gt=0, description="PSI above this raises a drift alert")
    mae_alert_s: float = Field(900.0, gt=0, description="rolling MAE above this raises an alert")
    monitor_group: str = Field("etastream-monitor", description="consumer group of `eta monitor`")
    monitor_error_window: Literal["15m", "1h", "24h"] = Field(
        "1h", description="rolling window the MAE alert is read over"
    )
    monitor_drift_window: Literal["15m", "1h", "24h"] = Field(
        "24h",
        description="rolling window drift alerts are read over, once full; a shorter one "
        "differs from the training reference by the daily cycle alone",
    )
    monitor_min_samples: int = Field(
        100, ge=1, description="fewest joined pairs or predictions in a window to raise an alert"
    )
    monitor_coverage_target: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="share of actual durations the ETA range (p10-p90) is meant to hold, the "
        "centre of the coverage alert's band",
    )
    monitor_coverage_tolerance: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="rolling range coverage further than this from the target, either side, "
        "raises a coverage alert (read over the error window)",
    )
    monitor_coverage_min_samples: int = Field(
        200,
        ge=1,
        description="fewest joined pairs with a range in the window to raise a coverage alert "
        "(a share over 100 pairs is within about 4 points of the truth)",
    )
    monitor_psi_min_entities: int = Field(
        10,
        ge=1,
        description="fewest states (a distinct store or market in an hour of event time) "
        "behind a store or market feature in the window for its PSI to be computed and "
        "alerted on: one entity's value within an hour is one state, not a draw per order",
    )
    monitor_psi_min_samples: int = Field(
        200,
        ge=1,
        description="fewest values of a column (the prediction or a feature) in the drift "
        "window for its PSI to be computed and alerted on; below it the summary and report say "
        "too few samples: over ~50 predictions sampling noise alone gives PSI 0.3-2",
    )
    monitor_drift_settle_s: float = Field(
        3600.0,
        ge=0,
        description="event-time seconds after the first prediction the monitor sees that a "
        "judged drift window may not reach back into: a stream that has just started has "
        "windows still filling (the longest streaming window is 60 minutes)",
    )
    monitor_psi_exempt: tuple[str, ...] = Field(
        ("order__hour_of_day", "order__day_of_week"),
        description="features whose PSI is reported but never alerted on (JSON list); calendar "
        "features differ from training in any window shorter than a week",
    )
    monitor_missing_share_alert: float = Field(
        0.2, gt=0, le=1, description="a feature missing this much more often than in training"
    )
    monitor_no_state_share_alert: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of predictions whose store or market had no state (streaming "
        "features at their defaults) that raises an alert",
    )
    monitor_freshness_alert_s: float = Field(
        43200.0,
        gt=0,
        description="p90 age of the store/market state behind predictions that raises an alert",
    )
    monitor_join_ttl_s: int = Field(
        86400, ge=60, description="how long a prediction waits in Redis for its delivery"
    )
    monitor_publish_s: float = Field(
        10.0, gt=0, description="how often the monitor publishes summaries and writes its files"
    )
    monitor_metrics_port: int = Field(9109, ge=0, description="Prometheus port of `eta monitor`")
    monitor_keep_rows: int = Field(
        500_000, ge=100, description="joined pairs kept on disk for `eta report` and `eta retrain`"
    )
    monitor_retrain: bool = Field(
        False,
        description="retrain when an MAE or PSI alert fires: register as staging, promote only "
        "if it beats production on a holdout",
    )
    monitor_retrain_window_s: int = Field(
        86400, ge=3600, description="retrain on the joined pairs delivered in this last span"
    )
    monitor_retrain_min_rows: int = Field(
        2000, ge=100, description="fewer joined pairs with features than this: no retraining"
    )
    monitor_retrain_cooldown_s: int = Field(
        21600, ge=0, description="least time between two automatic retraining runs"
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """As pydantic's, with ``kafka`` passwords hidden the way ``SecretStr`` hides its own."""
        for name, value in super().__repr_args__():
            yield name, masked_kafka(value) if name == "kafka" else value

    @field_serializer("kafka", when_used="json")
    def _kafka_json(self, kafka: dict[str, str]) -> dict[str, str]:
        return masked_kafka(kafka)

    def kafka_config(self) -> dict[str, str]:
        """Extra librdkafka settings with ``security_protocol`` spelled ``security.protocol``.

        >>> Settings(kafka={"security_protocol": "SASL_SSL"}).kafka_config()
        {'security.protocol': 'SASL_SSL'}
        """
        return {key.replace("_", "."): value for key, value in self.kafka.items()}

    def redis_url_value(self) -> str | None:
        return self.redis_url.get_secret_value() if self.redis_url is not None else None
