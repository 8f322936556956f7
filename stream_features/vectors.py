"""What the feature layer hands to a model: rows in ``feature_names()`` order.

``FeatureSource`` is the port the serving core talks to. The Redis implementation lives in
``redis_windows``/``online``; the offline replay in ``point_in_time`` implements the same
semantics in memory, which makes it both the training-set builder and the reference the parity
test compares Redis against.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from stream_features.contract import OrderCreated
from stream_features.wire_decode import AnyEvent, AnyOrder

__all__ = ["FeatureRows", "FeatureSource", "PartitionedFeatureSource"]


@dataclass(frozen=True)
class FeatureRows:
    """Model-ready vectors for a list of orders.

    ``values[i]`` is the input row of ``orders[i]`` in ``names`` order (float64; NaN means
    missing, which LightGBM handles). ``freshness_s[i]`` is the event-time age of the oldest
    entity state behind the row (NaN when an entity had no state yet). ``stats`` counts what
    the update did: ``applied``, ``duplicates``, ``late``. ``orders`` are either decoder's;
    ``created_ms[i]`` is ``orders[i]``'s creation in epoch ms, when the source kept it (the
    engine does: it read it anyway).
    """

    names: list[str]
    values: npt.NDArray[np.float64]
    freshness_s: npt.NDArray[np.float64]
    orders: Sequence[AnyOrder]
    stats: dict[str, int] = field(default_factory=dict)
    created_ms: Sequence[int] = ()

    def __len__(self) -> int:
        return len(self.orders)

    def row(self, i: int) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.names, self.values[i], strict=True)}


class FeatureSource(Protocol):
    """Where serving gets features; one call is one round trip to the state behind it.

    Events and orders come from either decoder: pydantic models (``contract.decode``: the API,
    replays) or Structs (``wire_decode.decode_fast``: the stream worker). Dispatch on
    ``event.type``.
    """

    def update_and_read(self, events: Sequence[AnyEvent]) -> FeatureRows:
        """Apply ``events`` in order and return a row per OrderCreated among them.

        Each order's row is read before its own update: the events before it in the batch
        count, the ones after it do not (what it would have seen alone).
        """
        ...

    def read(self, orders: Sequence[OrderCreated]) -> FeatureRows:
        """Rows for orders without changing any state (online requests, batch scoring)."""
        ...


@runtime_checkable
class PartitionedFeatureSource(FeatureSource, Protocol):
    """A source that keeps state per source partition (``redis_windows``): the engine says
    which partition each event came from and which partitions it no longer owns."""

    def update_and_read(
        self, events: Sequence[AnyEvent], partitions: Sequence[int] | None = None
    ) -> FeatureRows:
        """As ``FeatureSource.update_and_read``; ``partitions[i]`` is ``events[i]``'s."""
        ...

    def start_update(
        self, events: Sequence[AnyEvent], partitions: Sequence[int] | None = None
    ) -> tuple[FeatureRows, Future[None]]:
        """As ``update_and_read``, with the write-behind left in flight: nothing the rows
        lead to may be produced before the future settles (it raises what failed the write,
        and the next update raises it too, with memory dropped)."""
        ...

    def revoke(self, partitions: Sequence[int]) -> None:
        """Drop the state of ``partitions`` from memory (the next owner loads it)."""
        ...
