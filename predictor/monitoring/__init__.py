"""Watching models in production: accuracy from ground truth, drift, report, retraining.

The pure core (no I/O): ``rolling`` (event-time rings), ``accuracy`` (MAE, bias, p90 per
model version and market), ``drift`` (PSI against the artifact's reference, missing shares,
freshness), ``alerts`` (one event per crossing), ``join`` (the matching rules), ``intake``
(decode and route records), all composed by ``core.Monitor``. The adapters: ``redis_join``
(the join's state in Redis), ``service`` (the Kafka loop), ``recording`` (Parquet and JSON on
disk), ``metrics`` (Prometheus), ``runner`` (built from Settings). Then ``report`` and
``figures`` (``eta report``) and ``retrain`` (the retraining trigger). See docs/monitoring.md.
"""

from __future__ import annotations

from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.join import Joined, JoinStore, MemoryJoin
from predictor.monitoring.messages import (
    MonitorAlert,
    MonitorSummary,
    RetrainReport,
    decode_monitor_record,
    decode_prediction,
)

__all__ = [
    "JoinStore",
    "Joined",
    "MemoryJoin",
    "Monitor",
    "MonitorAlert",
    "MonitorConfig",
    "MonitorSummary",
    "RetrainReport",
    "decode_monitor_record",
    "decode_prediction",
]
