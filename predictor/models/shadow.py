"""Shadow scoring: a second model (e.g. ``staging``) scores the same batches, on the record only.

Its predictions are kept (and handed to a sink) for comparison with the served ones; they are
never returned, and a shadow that fails is counted and logged without touching serving.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from predictor.models.handle import ModelHandle

__all__ = ["ShadowRecord", "ShadowScorer", "Versioned"]

log = logging.getLogger(__name__)
Array = npt.NDArray[np.float64]


class Versioned(Protocol):
    """What the shadow records of the served model: its version (an ``EtaModel`` has one)."""

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class ShadowRecord:
    """One batch scored by the shadow model next to the served one."""

    at: float
    primary_version: str
    shadow_version: str
    rows: int
    mean_abs_diff_s: float
    max_abs_diff_s: float
    shadow_predictions: Array = field(repr=False)


class ShadowScorer:
    """Scores batches with a second handle's model and records, never returns, the result."""

    def __init__(
        self,
        handle: ModelHandle,
        sink: Callable[[ShadowRecord], None] | None = None,
        keep: int = 100,
    ) -> None:
        self.handle, self._sink = handle, sink
        self.records: deque[ShadowRecord] = deque(maxlen=keep)
        self.errors = 0

    def score(self, values: Array, primary: Versioned, served: Array) -> ShadowRecord | None:
        """Record the shadow's predictions for ``values``; a failure is counted, not raised."""
        model = self.handle.peek()
        if model is None or values.shape[0] == 0:
            return None
        try:
            predictions = np.asarray(model.predict(values), dtype=np.float64).reshape(-1)
            if predictions.shape[0] != values.shape[0]:
                raise ValueError(f"{predictions.shape[0]} predictions for {values.shape[0]} rows")
            diff = np.abs(predictions - served)
            record = ShadowRecord(
                at=time.time(),
                primary_version=primary.version,
                shadow_version=model.version,
                rows=int(values.shape[0]),
                mean_abs_diff_s=float(diff.mean()),
                max_abs_diff_s=float(diff.max()),
                shadow_predictions=predictions,
            )
            self.records.append(record)
            if self._sink is not None:
                self._sink(record)
        except Exception as exc:  # the shadow must never break serving
            self.errors += 1
            log.warning("shadow %s@%s failed: %s", self.handle.name, self.handle.stage, exc)
            return None
        return record
