"""Event-time alignment of the stream worker's input partitions while it drains a backlog.

Lateness is judged per store and market against the newest event time applied to it
(``ETA_LATENESS_S``). Live traffic keeps partitions close in event time, but a consumer that
drains hours of backlog gets whole fetches of one partition at a time: a thousand supply
snapshots of one partition span hours, and a market's orders from the other partitions then
arrive late. Kafka Streams picks the next record across its partitions by timestamp and waits a
bounded time (``max.task.idle.ms``) for an empty one; ``Aligner`` does the same for a consumer
that works in micro-batches, without I/O:

* what the consumer returns goes into a queue per partition; a record is released (to be
  processed) once its event time is at most ``margin_ms`` past the *frontier*, the earliest of
  the partitions that can still hold something older: a queue's first record, or the newest
  record of a partition with an empty queue that delivered within ``idle_s`` (or was assigned,
  resumed or rewound within it; one not heard from yet counts as earliest of all). A
  partition silent for ``idle_s`` is idle and holds nothing back, so a quiet or finished
  partition never stalls the others, and the partition at the frontier is always either
  released or consuming: the worker cannot deadlock.
* a record stamped within ``margin_ms`` of the wall clock is live and never held: a source
  whose stamps trail the others keeps its own lateness, but it never delays live orders.
* a partition with four batches of records waiting is paused (the consumer stops fetching
  it, bounding memory) and resumed when half of them have gone. A pause throws away what
  librdkafka had prefetched for the partition (it is fetched again on resume): pausing at one
  batch cost a fifth more worker CPU and a tenth of the backlog throughput here. One partition
  always stays unpaused (see ``moves``).

Kafka timestamps are not used: the producers leave them at produce time (``CreateTime``), which
says nothing about event time for a replayed or delayed stream. The event time is the field
``event_time`` reads after decoding, found in the raw JSON by ``event_time_ms`` (about a
microsecond, for a few records of each partition's run: the first, the last and a binary search
in between); a record without one (poison) is released in turn and moves no clock, and it is
decoded and dead-lettered as before. Released records keep their partition's order, so the
offsets of a batch stay a prefix of what is left, as commits require.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from predictor.serving.commits import TopicPartitionKey
from predictor.serving.records import SourceRecord

__all__ = ["Aligner", "Moves", "event_time_ms"]

R = TypeVar("R", bound=SourceRecord)

_TIME = re.compile(
    rb'"(?:created_at|delivered_at|at)"\s*:\s*(?:"([^"\\]{1,64})"|(-?\d{1,20}(?:\.\d{1,9})?)\b)'
)
_MS_ABOVE = 2e10  # as pydantic reads a number: above this it counts milliseconds, else seconds
_EARLIEST = float("-inf")


def event_time_ms(value: bytes | None) -> int | None:
    """The event time a raw record carries (epoch ms), found without decoding it; else None.

    It reads the field ``event_time`` reads after decoding (``created_at``, ``delivered_at`` or
    ``at``), as a string or a number of seconds or milliseconds as pydantic takes them.

    >>> event_time_ms(b'{"type":"OrderCreated","created_at":"2026-03-02T00:00:01.5+00:00"}')
    1772409601500
    >>> event_time_ms(b'{"picked_up_at":"2026-03-02T00:00:00Z",'
    ...               b'"delivered_at":"2026-03-02T01:00:00Z"}')
    1772413200000
    >>> event_time_ms(b'{"type":"DasherEvent","at": 1772409600}')
    1772409600000
    >>> [event_time_ms(v) for v in (b"not json", b'{"at":"2026-03-02T00:00:00"}', None)]
    [None, None, None]
    """
    found = _TIME.search(value) if value else None
    if found is None:
        return None
    text, number = found.groups()
    try:
        if text is not None:
            stamp = datetime.fromisoformat(text.decode())
            if stamp.tzinfo is None:  # rejected when decoded: it moves no clock
                return None
            return round(stamp.timestamp() * 1000)
        seconds = float(number)
    except (ValueError, OverflowError, UnicodeDecodeError):
        return None
    return round(seconds if abs(seconds) > _MS_ABOVE else seconds * 1000)


def _time(record: SourceRecord) -> float:
    ms = event_time_ms(record.value())
    return _EARLIEST if ms is None else ms


@dataclass(frozen=True)
class Moves:
    """Partitions to pause and to resume now."""

    pause: list[TopicPartitionKey] = field(default_factory=list)
    resume: list[TopicPartitionKey] = field(default_factory=list)


@dataclass(slots=True)
class _Partition(Generic[R]):
    heard_s: float  # last delivery, assignment, resume or rewind (monotonic seconds)
    held: list[R] = field(default_factory=list)
    start: int = 0  # held[start:] are waiting
    newest_ms: float | None = None  # newest event time consumed; None: not heard from yet
    head_ms: float | None = None  # event time of held[start], once looked up
    paused: bool = False

    @property
    def waiting(self) -> int:
        return len(self.held) - self.start

    def head(self) -> float:
        if self.head_ms is None:
            self.head_ms = _time(self.held[self.start])
        return self.head_ms

    def take(self, limit_ms: float, live_ms: float, room: int) -> list[R]:
        """The waiting records up to the first stamped after ``limit_ms`` and before
        ``live_ms``, at most ``room``."""
        lo, hi = self.start, min(len(self.held), self.start + room)
        end = hi
        if _time(self.held[hi - 1]) > limit_ms:  # else all of them (live traffic: one look)
            while lo < hi:  # first index stamped after the limit; a partition is in time order
                mid = (lo + hi) // 2
                if _time(self.held[mid]) > limit_ms:
                    hi = mid
                else:
                    lo = mid + 1
            if hi < end and _time(self.held[hi]) >= live_ms:
                hi = end  # what follows is live
        out = self.held[self.start : hi]
        self.start, self.head_ms = hi, None
        if self.start == len(self.held):
            self.held, self.start = [], 0
        elif self.start > 4096 and self.start * 2 > len(self.held):
            del self.held[: self.start]
            self.start = 0
        return out


class Aligner(Generic[R]):
    """Releases consumed records in (roughly) event-time order across partitions; see above.

    >>> from predictor.serving.records import RawRecord
    >>> def at(topic: str, minute: int) -> RawRecord:
    ...     value = b'{"at":"2026-03-02T00:%02d:00Z"}' % minute
    ...     return RawRecord(value, topic, 0)
    >>> a: Aligner[RawRecord] = Aligner(margin_ms=60_000, idle_s=1.0, max_release=100)
    >>> a.assign([("orders", 0), ("dasher", 0)], now_s=0.0)
    >>> a.admit([at("dasher", m) for m in range(0, 50, 10)], now_s=0.1, wall_ms=2e12)
    []
    >>> [r.topic() for r in a.admit([at("orders", 5)], now_s=0.2, wall_ms=2e12)]
    ['dasher', 'orders']
    >>> len(a.admit([], now_s=1.3, wall_ms=2e12))  # orders silent for a second: idle
    4
    """

    def __init__(
        self,
        margin_ms: int,
        idle_s: float,
        max_release: int,
        pause_at: int | None = None,
        resume_at: int | None = None,
    ) -> None:
        self.margin_ms, self.idle_s, self.max_release = margin_ms, idle_s, max_release
        self.pause_at = pause_at if pause_at is not None else 4 * max_release
        self.resume_at = resume_at if resume_at is not None else self.pause_at // 2
        self._parts: dict[TopicPartitionKey, _Partition[R]] = {}

    @property
    def paused(self) -> int:
        return sum(p.paused for p in self._parts.values())

    @property
    def waiting(self) -> int:
        return sum(p.waiting for p in self._parts.values())

    def assign(self, partitions: Iterable[TopicPartitionKey], now_s: float) -> None:
        """New partitions: nothing known, nothing held, not paused (the engine resumes them:
        librdkafka keeps a partition's pause across a revoke and a new assignment)."""
        for tp in partitions:
            self._parts[tp] = _Partition(heard_s=now_s)

    def forget(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Revoked or lost partitions: what they hold is dropped (it was not committed)."""
        for tp in partitions:
            self._parts.pop(tp, None)

    def rewind(self, partitions: Iterable[TopicPartitionKey], now_s: float) -> None:
        """The engine seeks these partitions back: what they hold will be read again."""
        for tp in partitions:
            if tp in self._parts:
                paused = self._parts[tp].paused
                self._parts[tp] = _Partition(heard_s=now_s, paused=paused)

    def admit(self, records: Sequence[R], now_s: float, wall_ms: float) -> list[R]:
        """Take what the consumer returned; give back what may be processed now, in order."""
        runs: dict[TopicPartitionKey, list[R]] = {}
        for record in records:
            tp = (record.topic() or "", record.partition() or 0)
            run = runs.get(tp)
            if run is None:
                run = runs[tp] = []
            run.append(record)
        nothing_waits = not any(p.waiting for p in self._parts.values())
        for tp, run in runs.items():
            part = self._parts.get(tp)
            if part is None:  # records of a partition not announced: take it as assigned
                part = self._parts[tp] = _Partition(heard_s=now_s)
            for record in reversed(run):  # the run's newest stamped record
                ms = _time(record)
                if ms != _EARLIEST:
                    part.newest_ms = ms if part.newest_ms is None else max(part.newest_ms, ms)
                    part.heard_s = now_s
                    break
        if (
            nothing_waits
            and len(records) <= self.max_release
            and self._all_due(runs, now_s, wall_ms)
        ):
            return list(records)  # live traffic: passed on as it came
        for tp, run in runs.items():
            self._parts[tp].held.extend(run)
        return self._release(now_s, wall_ms)

    def _all_due(
        self, runs: dict[TopicPartitionKey, list[R]], now_s: float, wall_ms: float
    ) -> bool:
        """Whether every run may go at once, judged against the runs' first records."""
        earliest: float | None = None
        for tp, part in self._parts.items():
            run = runs.get(tp)
            if run is not None:
                at = _time(run[0])
            elif now_s - part.heard_s < self.idle_s:
                at = _EARLIEST if part.newest_ms is None else part.newest_ms
            else:
                continue
            earliest = at if earliest is None else min(earliest, at)
        limit = float("inf") if earliest is None else earliest + self.margin_ms
        live_ms = wall_ms - self.margin_ms
        return all(_time(run[-1]) <= limit or _time(run[0]) >= live_ms for run in runs.values())

    def moves(self, now_s: float) -> Moves:
        """Pause the partitions with ``pause_at`` records waiting; resume those down to
        ``resume_at``.

        One partition always stays unpaused, the one the frontier waits on: librdkafka's fetcher
        sleeps up to a second when every partition is paused, and a resume does not wake it
        (it wakes at the next fetch response; measured: resumed partitions delivered 0.4–0.9 s
        later). It is paused all the same once ``4 * pause_at`` records wait, to bound memory.
        """
        moves = Moves()
        for tp, part in self._parts.items():
            if not part.paused and part.waiting >= self.pause_at:
                part.paused = True
                moves.pause.append(tp)
            elif part.paused and part.waiting <= self.resume_at:
                part.paused = False
                part.heard_s = now_s  # it may deliver again before it counts as idle
                moves.resume.append(tp)
        if self._parts and all(p.paused for p in self._parts.values()):
            tp, part = min(self._parts.items(), key=lambda item: item[1].head())
            if part.waiting < 4 * self.pause_at:
                part.paused = False
                if tp in moves.pause:
                    moves.pause.remove(tp)
                else:
                    part.heard_s = now_s
                    moves.resume.append(tp)
        return moves

    def frontier_ms(self, now_s: float) -> float | None:
        """The earliest event time a partition may still hold (None: no partition can)."""
        earliest: float | None = None
        for part in self._parts.values():
            if part.waiting:
                at = part.head()
            elif now_s - part.heard_s < self.idle_s:
                at = _EARLIEST if part.newest_ms is None else part.newest_ms
            else:
                continue  # idle
            earliest = at if earliest is None else min(earliest, at)
        return earliest

    def _release(self, now_s: float, wall_ms: float) -> list[R]:
        out: list[R] = []
        live_ms = wall_ms - self.margin_ms
        while len(out) < self.max_release:
            waiting = [p for p in self._parts.values() if p.waiting]
            if not waiting:
                break
            frontier = self.frontier_ms(now_s)
            limit = float("inf") if frontier is None else frontier + self.margin_ms
            first = min(waiting, key=_Partition.head)
            if limit < first.head() < live_ms:
                break  # the frontier is a partition that is still fetching
            out.extend(first.take(limit, live_ms, self.max_release - len(out)))
            if not first.waiting:  # its idle time runs from now: it was not fetching till now
                first.heard_s = now_s
        return out
