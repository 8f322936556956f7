"""The streaming path: partition-local window state in the worker, written behind to Redis.

``RedisFeatureSource`` keeps one ``ReplayState`` (the rules) per partition the worker owns and
applies each batch to it in memory. After the batch, one round trip (MULTI/EXEC, so a failure
leaves Redis at a batch boundary; on a Cluster, one MULTI/EXEC per partition, since a
partition's keys share a hash slot) writes what changed, a few commands per partition: the views
of the changed entities, which the API and the batch job read, and the partition's dedup ids and
outstanding orders, which a new owner loads (``state_codec`` has the layout). The engine commits
offsets only after this returns, so Redis is the recovery point: a successor loads the
partition's state and consumes from the committed offset, and dedup keeps a replayed event from
counting twice. When the write fails, the partitions of the batch are dropped from memory and
loaded again on the retry, so memory never runs ahead of Redis.

Market features draw on every store partition: a market has one partial per partition, each
counted by the partition's owner. A read adds the partials of the other partitions this
worker owns (live) and of partitions other workers own (read back with each batch's write,
so at most one batch of theirs, plus one of ours, stale; docs/streaming.md).

``read`` is the online read: the views of the orders' stores and markets from every partition
in Redis, summed by the same ``read_into``; it changes nothing. It is written as a plan
(``read_plan``, see ``redis_plan``), so the HTTP API awaits it on an asyncio client while the
batch job and the tests block on this source's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Any

import redis

from stream_features.definitions import BATCH_FEATURES
from stream_features.redis_client import REDIS_ERRORS, is_cluster
from stream_features.redis_plan import Command, Plan, queued, run_plan
from stream_features.redis_transaction import transaction
from stream_features.replay_state import (
    BatchTable,
    Changes,
    EntityState,
    ReplayState,
    apply_and_read,
    read_orders,
)
from stream_features.state_codec import (
    decode_view,
    encode_view,
    orders_key,
    partitions_key,
    seen_key,
    views_key,
)
from stream_features.vectors import FeatureRows
from stream_features.wire_decode import AnyEvent, AnyOrder

__all__ = ["BatchCache", "RedisFeatureSource", "WriteBehind"]

_STATS = ("applied", "duplicates", "late", "unmatched")
_FIRST_KEYS = tuple(dict.fromkeys(f.keys[0] for f in BATCH_FEATURES))
_SWEEP_EVERY = 256  # batches between sweeps of idle entities from memory


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _BatchWrite:
    """One batch's write-behind: each partition's commands (keys of one hash slot), then the
    shared ones (``shared[reads_from:]`` read back: the batch-feature version, the partitions
    with state, and the views of ``wanted`` entities in ``others``' partitions)."""

    client: Any  # the source's client when the batch was applied
    partitions: list[list[Command]] = field(default_factory=list)
    shared: list[Command] = field(default_factory=list)
    reads_from: int = 0
    wanted: list[str] = field(default_factory=list)
    others: list[int] = field(default_factory=list)


def _pairs(mapping: dict[str, Any]) -> Iterator[Any]:
    """A hash's fields and values, flat, as HSET takes them."""
    return chain.from_iterable(mapping.items())


class BatchCache:
    """The batch features of the current version, loaded hash by hash as orders need them.

    A hash ``b:<version>:<key name>:<key value>`` holds every feature addressed by that key
    value; once loaded (found or not) it is not asked for again until the version changes.
    """

    def __init__(self, prefix: str, max_hashes: int = 50_000) -> None:
        self._prefix = prefix
        self._max = max_hashes
        self.version: str | None = None
        self.tables: BatchTable = {}
        self._loaded: set[str] = set()

    def set_version(self, version: bytes | str | None) -> None:
        text = None if version is None else _text(version)
        if text != self.version or len(self._loaded) > self._max:
            self.version = text
            self.tables = {}
            self._loaded = set()

    def missing(self, orders: Iterable[AnyOrder]) -> list[str]:
        """The hashes the orders need that are not loaded yet."""
        if self.version is None:
            return []
        base = f"{self._prefix}b:{self.version}:"
        listed = orders if isinstance(orders, Sequence) else list(orders)
        wanted: set[str] = set()
        for name in _FIRST_KEYS:  # each distinct value once: a batch has far fewer than orders
            values = set(map(attrgetter(name), listed))
            values.discard(None)  # no category: no hash holds it (batch.py)
            wanted.update([f"{base}{name}:{value}" for value in values])
        return sorted(wanted - self._loaded)

    def fill(self, keys: Sequence[str], replies: Sequence[dict[Any, Any]]) -> None:
        for key, reply in zip(keys, replies, strict=True):
            head = key.rsplit(":", 1)[1]
            for raw_field, raw_value in reply.items():
                name, _, rest = _text(raw_field).partition("|")
                lookup = f"{head}|{rest}" if rest else head
                self.tables.setdefault(name, {})[lookup] = float(raw_value)
            self._loaded.add(key)


class WriteBehind(Future[None]):
    """A batch's write-behind in flight. Its failure is raised once: to whoever first asks
    for its result (the engine before producing the batch), else by the next update, which
    must not apply a batch on top of one Redis does not have."""

    seen = False

    def run(self, write: Callable[..., None], *args: Any) -> None:
        try:
            write(*args)
        except BaseException as exc:
            self.set_exception(exc)
        else:
            self.set_result(None)

    def result(self, timeout: float | None = None) -> None:
        try:
            return super().result(timeout)
        except BaseException:
            self.seen = self.done()
            raise


class RedisFeatureSource:
    """``FeatureSource`` of the stream worker (and, through ``read``, of the API)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "",
        lateness_s: int = 300,
        dedup_ttl_s: int = 2 * 86400,
        entity_ttl_s: int = 7 * 86400,
        max_outstanding_s: int = 6 * 3600,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._lateness_s = lateness_s
        self._max_outstanding_s = max_outstanding_s
        self._ttl_ms = max(entity_ttl_s, dedup_ttl_s) * 1000
        self._parts: dict[int, ReplayState] = {}
        self._remote: dict[str, dict[int, EntityState]] = {}  # market → partition → partial
        self._batch = BatchCache(key_prefix)
        self._batches = 0
        self._known: set[int] = set()  # partitions with state in Redis, as last read
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="write-behind")
        self._pending: WriteBehind | None = None  # the last batch's write, until settled
        self._swept = 0

    # --- ownership ------------------------------------------------------------------------------
    @property
    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def assign(self, partitions: Iterable[int]) -> None:
        """Own ``partitions``: load each new one's state from Redis (its recovery point)."""
        new = [p for p in dict.fromkeys(partitions) if p not in self._parts]
        if not new:
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.sadd(partitions_key(self._prefix), *new)
        for p in new:
            pipe.hgetall(views_key(self._prefix, p))
            pipe.hgetall(seen_key(self._prefix, p))
            pipe.hgetall(orders_key(self._prefix, p))
        replies = pipe.execute()[1:]
        for i, p in enumerate(new):
            views, seen, orders = replies[3 * i : 3 * i + 3]
            state = self._new_state()
            for key, raw in views.items():
                state.entities[_text(key)] = decode_view(raw)
            for table, target in ((seen, "seen"), (orders, "orders")):
                for raw_field, raw_value in table.items():
                    key, _, ref = _text(raw_field).partition("|")
                    entity = state.entities.get(key)
                    if entity is not None:
                        getattr(entity, target)[ref] = int(raw_value)
            self._parts[p] = state
        self._known.update(new)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Stop owning ``partitions``: their state leaves memory (Redis has it, once the write
        in flight has landed; a failure of it is left for the next update to raise)."""
        if self._pending is not None:
            wait([self._pending])
        for p in partitions:
            self._parts.pop(p, None)

    def _new_state(self) -> ReplayState:
        state = ReplayState(lateness_s=self._lateness_s, max_outstanding_s=self._max_outstanding_s)
        state.batch = self._batch.tables
        return state

    # --- the stream -----------------------------------------------------------------------------
    def update_and_read(
        self, events: Sequence[AnyEvent], partitions: Sequence[int] | None = None
    ) -> FeatureRows:
        """Apply ``events`` (``partitions[i]`` is the partition of ``events[i]``; all 0 when
        not given) and return a row per order, once the changes are written behind."""
        rows, written = self.start_update(events, partitions)
        written.result()
        return rows

    def start_update(
        self, events: Sequence[AnyEvent], partitions: Sequence[int] | None = None
    ) -> tuple[FeatureRows, Future[None]]:
        """As ``update_and_read``, but the write-behind round trip is left in flight: its
        future settles when Redis has acknowledged it (or failed it), so the caller can score
        the rows meanwhile and must wait for it before producing what they led to.

        The previous batch's write is waited for first, and when it failed, its error is
        raised here before anything is applied: memory was dropped with it, and a batch
        applied on top would be written over a gap.
        """
        self._settle_write()
        parts_of = list(partitions) if partitions is not None else [0] * len(events)
        self.assign(set(parts_of) - set(self._parts))
        orders = [e for e in events if e.type == "OrderCreated"]
        self._load_batch_features(orders)
        for state in self._parts.values():
            state.changes = Changes()
            if state.batch is not self._batch.tables:  # a new batch-feature version
                state.use_batch(self._batch.tables)
        self._link_markets({"m:" + e.market_id for e in events})
        before = {p: dict(s.stats) for p, s in self._parts.items()}
        parts = self._parts
        reads = apply_and_read(events, [parts[p] for p in parts_of])
        stats = {
            key: sum(s.stats[key] - before[p][key] for p, s in parts.items()) for key in _STATS
        }
        rows = reads.rows(stats)
        written = self._pending = WriteBehind()
        self._writer.submit(written.run, self._write, self._write_behind())
        return rows, written

    def _settle_write(self) -> None:
        """Wait for the write in flight; raise its error if nobody has seen it yet (memory is
        already dropped, so the retry loads the partitions again)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            wait([pending])
            if not pending.seen:
                pending.result()
        if self._batches and self._batches % _SWEEP_EVERY == 0 and self._batches != self._swept:
            self._swept = self._batches
            self._sweep()

    def _load_batch_features(self, orders: Sequence[AnyOrder]) -> None:
        if self._batches == 0:
            self._batch.set_version(self._client.get(f"{self._prefix}batch:current"))
        if self._fill_batch(orders):
            for state in self._parts.values():
                state.use_batch(self._batch.tables)

    def _fill_batch(self, orders: Sequence[AnyOrder]) -> bool:
        """Load the batch hashes ``orders`` need and the cache lacks (one round trip, only
        when some are missing); True when any were loaded."""
        return run_plan(self._client, self._fill_plan(orders))

    def _fill_plan(self, orders: Sequence[AnyOrder]) -> Plan[bool]:
        missing = self._batch.missing(orders)
        if missing:
            self._batch.fill(missing, (yield [("HGETALL", key) for key in missing]))
        return bool(missing)

    def _link_markets(self, markets: set[str]) -> None:
        """Give each partition the other partials of the batch's markets."""
        if len(self._parts) == 1 and not self._remote:
            return
        for p, state in self._parts.items():
            for mkey in markets:
                others = [
                    s.entities[mkey]
                    for q, s in self._parts.items()
                    if q != p and mkey in s.entities
                ]
                others.extend(
                    partial
                    for q, partial in self._remote.get(mkey, {}).items()
                    if q not in self._parts
                )
                state.market_partials[mkey] = others

    def _write_behind(self) -> _BatchWrite:
        """The batch's changes, a few commands per partition, with the other partitions'
        market partials and the batch-feature version to read back for the next batch: built
        here, on the caller's thread, because the views are encoded from state the next batch
        will change; sent by ``_write``."""
        prefix = self._prefix
        write = _BatchWrite(self._client)
        markets: set[str] = set()
        for p, state in self._parts.items():
            changes = state.changes
            state.changes = None
            if changes is None:
                continue
            entities = state.entities
            commands: list[Command] = []
            if changes.views:
                views = {key: encode_view(entities[key]) for key in changes.views}
                commands.append(("HSET", views_key(prefix, p), *_pairs(views)))
                markets.update(key for key in changes.views if key[0] == "m")
            if changes.seen_added:
                commands.append(("HSET", seen_key(prefix, p), *_pairs(changes.seen_added)))
            if changes.seen_dropped:
                commands.append(("HDEL", seen_key(prefix, p), *changes.seen_dropped))
            if changes.orders_added:
                commands.append(("HSET", orders_key(prefix, p), *_pairs(changes.orders_added)))
            if changes.orders_dropped:
                commands.append(("HDEL", orders_key(prefix, p), *changes.orders_dropped))
            for key, written in (
                (views_key(prefix, p), changes.views),
                (seen_key(prefix, p), changes.seen_added),
                (orders_key(prefix, p), changes.orders_added),
            ):
                if written:  # a hash emptied and filled again would otherwise lose its TTL
                    commands.append(("PEXPIRE", key, self._ttl_ms))
            if commands:
                write.partitions.append(commands)
        shared = write.shared
        if self._parts:  # the set readers ask every partition of; it expires like the rest
            shared.append(("SADD", partitions_key(prefix), *self._parts))
            shared.append(("PEXPIRE", partitions_key(prefix), self._ttl_ms))
        write.reads_from = len(shared)
        shared.append(("GET", f"{prefix}batch:current"))
        shared.append(("SMEMBERS", partitions_key(prefix)))
        markets.update(self._remote)
        write.wanted = sorted(markets)
        write.others = sorted(self._known - set(self._parts)) if write.wanted else []
        shared.extend(self._views_of(write.others, write.wanted))
        return write

    def _views_of(self, partitions: Iterable[int], keys: Sequence[str]) -> list[Command]:
        """An HMGET of ``keys`` from each partition's views hash, in order: how the worker's
        read-back and the online read ask for other partitions' state."""
        return [("HMGET", views_key(self._prefix, p), *keys) for p in partitions]

    def _send(self, write: _BatchWrite) -> list[Any]:
        """Send ``write``; the replies of its shared commands.

        On one Redis, everything goes in one MULTI/EXEC (``redis_transaction``, packed in C):
        one round trip, and a failure leaves Redis at a batch boundary. On a Cluster a
        transaction must stay in one slot, so each partition's commands (its keys share the
        hash tag ``{p<n>}``) are one MULTI/EXEC of their own (redis-py's cluster pipeline),
        then the shared keys go in a plain pipeline. A failure between them leaves
        some partitions a batch ahead of others, which is safe: each partition's state and
        dedup ids land together, the retry reloads them, and dedup keeps the batch from
        counting twice where it had landed.
        """
        if is_cluster(write.client):
            for commands in write.partitions:
                queued(write.client.pipeline(transaction=True), commands).execute()
            return list(queued(write.client.pipeline(transaction=False), write.shared).execute())
        replies = transaction(
            write.client, [c for cs in write.partitions for c in cs] + write.shared
        )
        return replies[len(replies) - len(write.shared) :]

    def _write(self, write: _BatchWrite) -> None:
        """Send the batch's write (on the writer thread, one at a time, so writes land in
        batch order) and keep what it read back for the next batch, which waits for this."""
        try:
            replies = self._send(write)
        except BaseException:
            self._parts.clear()  # memory may be ahead of Redis: load again on the retry
            raise
        self._batches += 1
        wanted, others = write.wanted, write.others
        tail = replies[write.reads_from :]
        self._batch.set_version(tail[0])
        self._known = {int(_text(v)) for v in tail[1]}
        read_back = dict(zip(others, tail[2:], strict=True))
        new = sorted(self._known - set(self._parts) - set(others)) if wanted else []
        if new:  # partitions that got state since the last batch: read them now, once
            more = queued(self._client.pipeline(transaction=False), self._views_of(new, wanted))
            try:
                read_back.update(zip(new, more.execute(), strict=True))
            except REDIS_ERRORS:  # the batch is written: read them with the next one
                self._known -= set(new)
        remote: dict[str, dict[int, EntityState]] = {key: {} for key in wanted}
        for q, views in read_back.items():
            for key, raw in zip(wanted, views, strict=True):
                if raw is not None:
                    remote[key][q] = decode_view(raw)
        self._remote = remote

    def _sweep(self) -> None:
        """Drop from memory the entities idle for longer than the TTL in event time (their
        Redis keys expire with the same TTL)."""
        for p, state in self._parts.items():
            marks = [e.wm for e in state.entities.values() if e.wm is not None]
            if not marks:
                continue
            horizon = max(marks) - self._ttl_ms
            idle = [k for k, e in state.entities.items() if e.wm is None or e.wm < horizon]
            for key in idle:
                del state.entities[key]
            if idle:
                self._client.hdel(views_key(self._prefix, p), *idle)

    # --- the online read ------------------------------------------------------------------------
    def read(self, orders: Sequence[AnyOrder]) -> FeatureRows:
        """Rows for ``orders`` from the views in Redis, without changing any state: ``read_plan``
        run on this source's (blocking) client."""
        return run_plan(self._client, self.read_plan(orders))

    def read_plan(self, orders: Sequence[AnyOrder]) -> Plan[FeatureRows]:
        """The online read as a plan (``redis_plan``), for a blocking or an asyncio client.

        One round trip: the batch version, the partitions with state, and the orders' stores
        and markets from each partition known from the last read (a second round trip only for
        partitions new since then, and for batch hashes not cached yet).
        """
        orders = list(orders)
        entities = sorted(
            {"s:" + o.store_id for o in orders} | {"m:" + o.market_id for o in orders}
        )
        asked = sorted(self._known)
        replies = yield [
            ("GET", f"{self._prefix}batch:current"),
            ("SMEMBERS", partitions_key(self._prefix)),
            *self._views_of(asked, entities),
        ]
        self._batch.set_version(replies[0])
        known = {int(_text(v)) for v in replies[1]}
        self._known = known
        views = dict(zip(asked, replies[2:], strict=True))
        new = sorted(known - set(asked))
        if new:
            more = yield self._views_of(new, entities)
            views.update(zip(new, more, strict=True))
        partials: dict[str, list[EntityState]] = {key: [] for key in entities}
        for p in sorted(known):
            for key, raw in zip(entities, views[p], strict=True):
                if raw is not None:
                    partials[key].append(decode_view(raw))
        yield from self._fill_plan(orders)
        state = ReplayState(lateness_s=self._lateness_s, batch=self._batch.tables)
        reads = read_orders(state, orders, partials)
        return reads.rows({key: 0 for key in _STATS})
