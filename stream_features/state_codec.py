"""How the worker's window state is kept in Redis: the key names and the view's bytes.

The stream worker owns the state of its partitions in memory (``replay_state``) and writes it
behind to Redis after each batch (``redis_windows``). Every key of partition ``n`` carries the
hash tag ``{p<n>}``, so on Redis Cluster a partition is one slot and its batch write one
MULTI/EXEC. Keys, all under the key prefix:

- ``{p<n>}:views``: hash, field ``s:<store>`` / ``m:<market>`` → the *view* of that entity's
  partial in partition ``n`` (what a read needs: newest event time, snapshot time, bucket
  totals per signal, gauges). A store has one partial; a market one per partition its events
  reach. The API and the batch job read the fields they need from every partition and sum
  the partials; a new owner reads the whole hash.
- ``{p<n>}:seen`` / ``{p<n>}:orders``: hash ``<entity>|<event id>`` → event time, and
  ``<entity>|<order id>`` → creation time: the dedup horizon and the outstanding orders,
  which only a new owner of the partition reads.
- ``partitions``: set of the partition numbers that have state (readers ask every one).
- ``batch:current`` and ``b:<version>:<key name>:<key value>``: the batch features
  (``stream_features.batch``).

A view is ``[wm, snap, [[signal, base, v0, v1, ...], ...], {gauge: value}]`` as JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_features.contract import to_json
from stream_features.replay_state import EntityState, Series

__all__ = [
    "decode_view",
    "encode_view",
    "orders_key",
    "partitions_key",
    "seen_key",
    "views_key",
]


def views_key(prefix: str, partition: int) -> str:
    """The views of partition ``partition``'s entities.

    >>> views_key("eta:", 3)
    'eta:{p3}:views'
    """
    return f"{prefix}{{p{partition}}}:views"


def seen_key(prefix: str, partition: int) -> str:
    return f"{prefix}{{p{partition}}}:seen"


def orders_key(prefix: str, partition: int) -> str:
    return f"{prefix}{{p{partition}}}:orders"


def partitions_key(prefix: str) -> str:
    return f"{prefix}partitions"


def encode_view(state: EntityState) -> bytes:
    """The part of ``state`` a read needs, as JSON (``to_json``: a batch's views are kept
    until they are written, where orjson cost 6.8 us a view and msgspec 1.3).

    >>> s = EntityState(wm=120_000, gauges={"outstanding": 2}); s.bump("created", 2, 1)
    >>> encode_view(s)
    b'[120000,-1,[["created",2,1]],{"outstanding":2}]'
    """
    return to_json(
        [
            state.wm,
            state.snap,
            [[signal, series.base, *series.vals] for signal, series in state.series.items()],
            state.gauges,
        ]
    )


def decode_view(raw: bytes | str) -> EntityState:
    """An ``EntityState`` with the view's fields (no dedup ids or orders).

    >>> v = decode_view(b'[120000,-1,[["created",2,1]],{"outstanding":2}]')
    >>> v.wm, v.series["created"].window(2, 10), v.gauges
    (120000, 1, {'outstanding': 2})
    """
    wm, snap, series, gauges = orjson.loads(raw)
    state = EntityState(wm=wm, snap=snap, gauges=_ints(gauges))
    for signal, base, *vals in series:
        state.series[signal] = Series(int(base), [int(v) for v in vals])
    return state


def _ints(gauges: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in gauges.items()}
