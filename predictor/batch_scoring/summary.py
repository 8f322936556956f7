"""What a batch run did: the summary ``eta predict batch`` prints and writes as summary.json."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "BatchRun", "new_version"]

STAGES = ("orders", "features", "scoring", "encoding", "redis", "parquet")


@dataclass
class BatchRun:
    """What a run did: the summary ``eta predict batch`` prints and writes as summary.json."""

    version: str
    as_of: datetime
    slots: int
    model_name: str
    model_version: str
    backend: str | None
    stores: int = 0
    rows: int = 0
    skipped_stores: int = 0
    seconds: float = 0.0
    parquet_dir: Path | None = None
    redis_key: str | None = None
    dropped_versions: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "as_of": self.as_of,
            "slots": self.slots,
            "stores": self.stores,
            "rows": self.rows,
            "skipped_stores": self.skipped_stores,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "backend": self.backend,
            "parquet_dir": str(self.parquet_dir) if self.parquet_dir else None,
            "redis_key": self.redis_key,
            "dropped_versions": self.dropped_versions,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


def new_version(now: datetime) -> str:
    """A run id that sorts by time and never collides: ``20260101T120000.123Z-1a2b3c``."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"
