"""Serving paths: the streaming core (no I/O) and what engines need around it."""

from __future__ import annotations

from predictor.serving.pipeline import (
    BatchResult,
    DecodedBatch,
    PipelineConfig,
    ScoringModel,
    decode_batch,
    process_batch,
    score_batch,
)
from predictor.serving.records import OutRecord, RawRecord, SourceRecord

__all__ = [
    "BatchResult",
    "DecodedBatch",
    "OutRecord",
    "PipelineConfig",
    "RawRecord",
    "ScoringModel",
    "SourceRecord",
    "decode_batch",
    "process_batch",
    "score_batch",
]
