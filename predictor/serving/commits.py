"""Which offsets may be committed: only those whose every produced record the broker acknowledged.

Batches are produced one after another without waiting for acknowledgements (the wait would
cap throughput at one broker round trip per batch); each keeps its count of records not yet
acknowledged. Offsets are committed for the oldest batches that are complete, in order, and
never past a batch still waiting or one with a failed delivery. After a failure the engine
rewinds every partition to the first offset no commit covers and produces those records again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CommitTracker", "InFlightBatch", "TopicPartitionKey", "offset_span"]

TopicPartitionKey = tuple[str, int]


def offset_span(
    positions: Iterable[tuple[str, int, int]],
) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, int]]:
    """First offset and next offset (last + 1) per partition of (topic, partition, offset)s.

    >>> offset_span([("o", 0, 5), ("o", 1, 9), ("o", 0, 6)])
    ({('o', 0): 5, ('o', 1): 9}, {('o', 0): 7, ('o', 1): 10})
    """
    first: dict[TopicPartitionKey, int] = {}
    nxt: dict[TopicPartitionKey, int] = {}
    for topic, partition, offset in positions:
        tp = (topic, partition)
        if tp not in first or offset < first[tp]:
            first[tp] = offset
        if offset + 1 > nxt.get(tp, -1):
            nxt[tp] = offset + 1
    return first, nxt


@dataclass
class InFlightBatch:
    """One produced batch: its offsets and how many of its records await acknowledgement."""

    first: dict[TopicPartitionKey, int]
    next: dict[TopicPartitionKey, int]
    pending: int
    created_ms: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    acked_wall_ms: int | None = None

    def __post_init__(self) -> None:
        if self.pending == 0:
            self.acked_wall_ms = int(time.time() * 1000)

    def on_delivery(self, err: Any, _msg: Any = None) -> None:
        """The producer's delivery callback for each of this batch's records."""
        if err is not None:
            self.errors.append(str(err))
        self.pending -= 1
        if self.pending == 0:
            self.acked_wall_ms = int(time.time() * 1000)

    @property
    def done(self) -> bool:
        return self.pending <= 0 and not self.errors


class CommitTracker:
    """Produced batches, oldest first, until their offsets are committed or rewound.

    >>> t = CommitTracker()
    >>> a = t.open({("o", 0): 0}, {("o", 0): 10}, pending=1)
    >>> b = t.open({("o", 0): 10}, {("o", 0): 20}, pending=0)
    >>> t.take_committable()  # a still waits, so b cannot be committed either
    {}
    >>> a.on_delivery(None)
    >>> t.take_committable(), len(t)
    ({('o', 0): 20}, 0)
    """

    def __init__(self) -> None:
        self._batches: deque[InFlightBatch] = deque()

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[InFlightBatch]:
        return iter(self._batches)

    def open(
        self,
        first: dict[TopicPartitionKey, int],
        nxt: dict[TopicPartitionKey, int],
        pending: int,
        created_ms: list[int] | None = None,
    ) -> InFlightBatch:
        batch = InFlightBatch(first, nxt, pending, created_ms or [])
        self._batches.append(batch)
        return batch

    @property
    def pending(self) -> int:
        """Records produced and not yet acknowledged."""
        return sum(max(b.pending, 0) for b in self._batches)

    @property
    def failed(self) -> list[str]:
        """Delivery errors of batches not yet committed (empty when all is well)."""
        return [e for b in self._batches for e in b.errors]

    def take_complete(self) -> list[InFlightBatch]:
        """Pop the oldest batches that are fully acknowledged, stopping at the first that is not."""
        out: list[InFlightBatch] = []
        while self._batches and self._batches[0].done:
            out.append(self._batches.popleft())
        return out

    def take_committable(self) -> dict[TopicPartitionKey, int]:
        """Offsets to commit for the complete batches popped (the newest per partition)."""
        offsets: dict[TopicPartitionKey, int] = {}
        for batch in self.take_complete():
            for tp, offset in batch.next.items():
                offsets[tp] = max(offset, offsets.get(tp, offset))
        return offsets

    def rewind(self) -> dict[TopicPartitionKey, int]:
        """Forget every batch left; where each partition must be read again from.

        >>> t = CommitTracker()
        >>> _ = t.open({("o", 0): 10, ("o", 1): 3}, {("o", 0): 20, ("o", 1): 4}, pending=2)
        >>> _ = t.open({("o", 0): 20}, {("o", 0): 30}, pending=0)
        >>> t.rewind(), len(t)
        ({('o', 0): 10, ('o', 1): 3}, 0)
        """
        first: dict[TopicPartitionKey, int] = {}
        for batch in self._batches:
            for tp, offset in batch.first.items():
                first[tp] = min(offset, first.get(tp, offset))
        self._batches.clear()
        return first
