"""``redis_transaction.transaction`` on a real Redis: the replies redis-py's pipeline would read,
its errors raised the same way, and a connection never left out of step."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import ResponseError

from stream_features.redis_transaction import transaction

pytestmark = pytest.mark.integration


def test_the_replies_come_back_in_order_raw(redis_client: redis.Redis, key_prefix: str) -> None:
    h, s = f"{key_prefix}tx:h", f"{key_prefix}tx:s"
    replies = transaction(
        redis_client,
        [
            ("HSET", h, "a", 1, "b", b"\x00two", "c", 2.5),
            ("PEXPIRE", h, 60_000),
            ("SADD", s, 3, 1),
            ("HMGET", h, "a", "b", "missing"),
            ("SMEMBERS", s),
            ("GET", f"{key_prefix}tx:none"),
        ],
    )

    assert replies[:3] == [3, 1, 2]
    assert replies[3] == [b"1", b"\x00two", None]
    assert sorted(replies[4]) == [b"1", b"3"]
    assert replies[5] is None
    assert redis_client.hgetall(h) == {b"a": b"1", b"b": b"\x00two", b"c": b"2.5"}


def test_a_command_refused_when_queued_aborts_all_of_it(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}tx:aborted"
    with pytest.raises(ResponseError, match=r"(?i)unknown command"):
        transaction(redis_client, [("SET", key, "1"), ("NOSUCHCOMMAND", key)])

    assert redis_client.get(key) is None  # Redis discarded the transaction
    assert transaction(redis_client, [("SET", key, "2")]) == [b"OK"]  # the pool goes on
    assert redis_client.get(key) == b"2"


def test_an_error_inside_exec_is_raised_and_the_rest_has_run(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    text, after = f"{key_prefix}tx:text", f"{key_prefix}tx:after"
    redis_client.set(text, "not a hash")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        transaction(redis_client, [("HSET", text, "f", "v"), ("SET", after, "ran")])

    assert redis_client.get(after) == b"ran"  # as Redis runs a transaction: no rollback
    # the pool is in step: the next transaction on it reads its own replies
    for _ in range(3):
        assert transaction(redis_client, [("GET", after)]) == [b"ran"]
