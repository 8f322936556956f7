"""Feature rows for "order now" at each of the next K hour slots, from the stream's state.

Slot ``k`` is ``as_of + k`` hours. Every row comes from ``get_online_features`` — the read the
online API and the stream make — for the store's synthetic order stamped at the slot:

* slot 0 is exactly the row an online request for that order at ``as_of`` gets (and the row
  the stream would compute for it);
* for a later slot the order's own time features (hour, weekday) and the batch features keyed
  by time (store × hour-of-week, market × hour-of-day) are the slot's, while the streaming
  features (recent orders, backlog, dashers) are carried over from ``as_of``: the current load
  is the forecast of the load in the next hours (persistence). Reading them at the slot instead
  would empty every window (no events are known past ``as_of``) and describe a store that
  suddenly went quiet.

``feature_freshness_s`` stays the read's own: the age of the state relative to the slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import redis

from stream_features.contract import OrderCreated
from stream_features.definitions import STREAM_FEATURES, feature_names
from stream_features.online import get_online_features
from stream_features.vectors import FeatureRows

__all__ = ["STREAM_COLUMNS", "batch_order_id", "slot_orders", "slot_rows", "slot_times"]

STREAM_COLUMNS: npt.NDArray[np.intp] = np.array(
    [feature_names().index(f.name) for f in STREAM_FEATURES], dtype=np.intp
)
"""Columns of a model row that come from the streaming state (carried over to later slots)."""


def slot_times(as_of: datetime, slots: int) -> list[datetime]:
    """The order times of the slots: ``as_of`` and each hour after it.

    >>> from datetime import UTC
    >>> [t.hour for t in slot_times(datetime(2026, 1, 1, 11, 20, tzinfo=UTC), 3)]
    [11, 12, 13]
    """
    return [as_of + timedelta(hours=k) for k in range(slots)]


def batch_order_id(store_id: str, slot: int) -> str:
    """The synthetic order id of a store's slot (within the contract's 64 characters).

    >>> batch_order_id("s42", 3)
    'batch:s42:3'
    >>> len(batch_order_id("x" * 64, 3))
    28
    """
    order_id = f"batch:{store_id}:{slot}"
    if len(order_id) <= 64:
        return order_id
    return f"batch:{hashlib.sha256(store_id.encode()).hexdigest()[:20]}:{slot}"


def slot_orders(templates: Sequence[OrderCreated], slots: int) -> list[OrderCreated]:
    """Each template (stamped at ``as_of``) at every slot, store-major: row ``i * slots + k``."""
    out = []
    for template in templates:
        for k, at in enumerate(slot_times(template.created_at, slots)):
            update = {"order_id": batch_order_id(template.store_id, k), "created_at": at}
            out.append(template.model_copy(update=update))
    return out


def slot_rows(
    client: redis.Redis, orders: Sequence[OrderCreated], slots: int, *, key_prefix: str = ""
) -> FeatureRows:
    """Rows for ``slot_orders(...)`` output: one read, then slot 0's streaming columns carried
    over to the later slots of the same store (see the module docstring)."""
    if len(orders) % slots:
        raise ValueError(f"{len(orders)} orders are not whole stores of {slots} slots")
    rows = get_online_features(client, orders, key_prefix=key_prefix)
    values = rows.values.reshape(len(orders) // slots, slots, -1).copy()
    values[:, 1:, STREAM_COLUMNS] = values[:, :1, STREAM_COLUMNS]
    return replace(rows, values=values.reshape(len(orders), -1))
