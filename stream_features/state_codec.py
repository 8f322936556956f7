"""How an entity's window state is kept in Redis: the key names and the view's bytes.

The stream worker owns the state of its partitions in memory (``replay_state``) and writes it
behind to Redis after each batch (``redis_windows``). Keys, all under the key prefix:

- ``s:<store>`` / ``m:<market>``: hash, field ``<partition>`` → the *view* of that entity's
  partial in that partition (what a read needs: newest event time, snapshot time, bucket
  totals per signal, gauges). A store has one partial; a market one per partition its events
  reach. The API and the batch job read these hashes whole and sum the partials.
- ``p<partition>:entities``: set of the entity keys a partition holds (its recovery index).
- ``p<partition>:seen`` / ``p<partition>:orders``: hash ``<entity key>|<event id>`` → event
  time, and ``<entity key>|<order id>`` → creation time: the dedup horizon and the outstanding
  orders, which only a new owner of the partition reads.
- ``batch:current`` and ``b:<version>:<key name>:<key value>``: the batch features
  (``stream_features.batch``).

A view is ``[wm, snap, [[signal, base, v0, v1, ...], ...], {gauge: value}]`` as JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_features.replay_state import EntityState, Series

__all__ = [
    "decode_view",
    "encode_view",
    "entity_key",
    "index_key",
    "orders_key",
    "seen_key",
]


def entity_key(prefix: str, entity: str) -> str:
    """The view hash of ``s:<store>`` or ``m:<market>``.

    >>> entity_key("eta:", "s:42")
    'eta:s:42'
    """
    return prefix + entity


def index_key(prefix: str, partition: int) -> str:
    return f"{prefix}p{partition}:entities"


def seen_key(prefix: str, partition: int) -> str:
    return f"{prefix}p{partition}:seen"


def orders_key(prefix: str, partition: int) -> str:
    return f"{prefix}p{partition}:orders"


def encode_view(state: EntityState) -> bytes:
    """The part of ``state`` a read needs, as JSON.

    >>> s = EntityState(wm=120_000, gauges={"outstanding": 2}); s.bump("created", 2, 1)
    >>> encode_view(s)
    b'[120000,-1,[["created",2,1]],{"outstanding":2}]'
    """
    return orjson.dumps(
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
