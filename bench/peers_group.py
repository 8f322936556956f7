"""Which partitions each member of a consumer group holds, read from the workers' JSON logs.

etastream's worker logs every change of its assignment (``predictor/engines/confluent.py``:
``partitions assigned``, ``partitions revoked``, ``partitions lost``, each with its
``topic[partition]`` names). The peer bench's two-process row starts both workers on an empty
``orders`` topic and produces the backlog only once the group has settled (every member holds
a share, each partition once), so the group's join and its first rebalance stay out of the
measured span; the assignments logged after that are counted (rebalances inside the span).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["Holding", "Log", "holding", "log_from_end", "read_holdings", "settled", "wait_settled"]

_GAIN, _LOSE = ("partitions assigned",), ("partitions revoked", "partitions lost")


@dataclass(frozen=True)
class Holding:
    """One worker's partitions of a topic after its log so far, and how many assignments of
    that topic it logged."""

    partitions: frozenset[int]
    assignments: int


def holding(lines: Iterable[str], topic: str) -> Holding:
    """What the worker holds of ``topic`` after these log lines (other lines are skipped).

    Eager assignment (the worker's ``range``) revokes everything before each assignment;
    an incremental one adds and removes: both read the same way.

    >>> log = [
    ...     '{"msg": "partitions assigned", "partitions": ["orders[0]", "orders[1]", "x[0]"]}',
    ...     'not json',
    ...     '{"msg": "partitions revoked", "partitions": ["orders[0]", "orders[1]"]}',
    ...     '{"msg": "partitions assigned", "partitions": ["orders[1]"]}',
    ... ]
    >>> holding(log, "orders")
    Holding(partitions=frozenset({1}), assignments=2)
    """
    held: set[int] = set()
    assignments = 0
    prefix = f"{topic}["
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        msg = str(record.get("msg", ""))
        mine = {
            int(name[len(prefix) : -1])
            for name in record.get("partitions") or ()
            if isinstance(name, str) and name.startswith(prefix)
        }
        if msg.startswith(_GAIN) and mine:
            held |= mine
            assignments += 1
        elif msg.startswith(_LOSE):
            held -= mine
    return Holding(frozenset(held), assignments)


def settled(holdings: Sequence[Holding], partitions: int) -> bool:
    """Every member holds some partitions, none twice, all ``partitions`` of them.

    >>> a, b = Holding(frozenset({0, 1}), 2), Holding(frozenset({2, 3}), 1)
    >>> settled([a, b], 4), settled([a, Holding(frozenset({1, 2, 3}), 1)], 4)
    (True, False)
    >>> settled([Holding(frozenset(range(4)), 1), Holding(frozenset(), 0)], 4)
    False
    """
    held = [h.partitions for h in holdings]
    union = frozenset().union(*held)
    disjoint = sum(len(p) for p in held) == len(union)
    return all(held) and disjoint and union == frozenset(range(partitions))


Log = tuple[Path, int]  # a worker's log file and where this run's lines start in it


def log_from_end(path: Path) -> Log:
    """``path`` read from its current end: a kept log (``--keep``) is appended to."""
    return path, path.stat().st_size if path.exists() else 0


def read_holdings(logs: Sequence[Log], topic: str) -> list[Holding]:
    """Each worker's holding of ``topic``, from its log's lines of this run."""
    out = []
    for path, start in logs:
        lines: list[str] = []
        if path.exists():  # a worker's log is there from its launch (``Worker``)
            with path.open("rb") as f:
                f.seek(start)
                lines = f.read().decode(errors="replace").splitlines()
        out.append(holding(lines, topic))
    return out


def wait_settled(
    logs: Sequence[Log],
    topic: str,
    partitions: int,
    timeout_s: float,
    alive: Callable[[], bool],
) -> list[Holding] | None:
    """Poll the logs until the group has settled on ``topic``; its holdings, or None when
    ``timeout_s`` passed or a worker exited first."""
    until = time.monotonic() + timeout_s
    while time.monotonic() < until and alive():
        got = read_holdings(logs, topic)
        if settled(got, partitions):
            return got
        time.sleep(0.1)
    return None
