"""Serving paths: the streaming core (no I/O) and what engines need around it."""

from __future__ import annotations

from predictor.serving.pipeline import BatchResult, PipelineConfig, ScoringModel, process_batch
from predictor.serving.records import OutRecord, RawRecord, SourceRecord

__all__ = [
    "BatchResult",
    "OutRecord",
    "PipelineConfig",
    "RawRecord",
    "ScoringModel",
    "SourceRecord",
    "process_batch",
]
