"""What went wrong with the feature store, in words an operator acts on, and the one Redis
setting that would lose feature state without an error: its eviction policy.

Every feature key the stream worker writes carries a TTL (``ETA_ENTITY_TTL_S``), and the
registry's stage pointers carry none. So under ``allkeys-*`` Redis evicts anything when it
reaches ``maxmemory``, and under ``volatile-*`` it evicts exactly the feature state (the keys
with a TTL): either way windows lose counts silently and the predictions drift. Only
``noeviction`` turns a full Redis into an error the worker can see, retry with backoff and
report (``feature_store_cause`` says ``maxmemory``), losing nothing.
"""

from __future__ import annotations

import logging

import redis

__all__ = [
    "EVICTING_POLICIES",
    "check_eviction_policy",
    "describe_cause",
    "feature_store_cause",
]

EVICTING_POLICIES = frozenset(
    {
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    }
)
"""Policies under which Redis drops feature keys at ``maxmemory`` instead of refusing writes."""

_CAUSES = {
    "maxmemory": "Redis is at its memory limit (maxmemory); raise maxmemory or free memory",
    "connection": "Redis cannot be reached",
    "timeout": "Redis did not answer in time",
    "error": "Redis answered with an error",
}


def feature_store_cause(exc: BaseException) -> str:
    """The cause of a failed feature round trip, as a metric label.

    >>> feature_store_cause(redis.exceptions.OutOfMemoryError("OOM command not allowed"))
    'maxmemory'
    >>> feature_store_cause(redis.ResponseError("OOM command not allowed when used memory > x"))
    'maxmemory'
    >>> feature_store_cause(redis.ConnectionError("refused")), feature_store_cause(TimeoutError())
    ('connection', 'timeout')
    """
    # redis-py raises OutOfMemoryError for a plain OOM reply, but a script (the worker's
    # write-behind) or a pipeline can surface it as a ResponseError carrying the same text
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM command not allowed" in str(exc):
        return "maxmemory"
    if isinstance(exc, (redis.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, (redis.ConnectionError, ConnectionError)):
        return "connection"
    return "error"


def describe_cause(cause: str) -> str:
    """The operator's sentence for a ``feature_store_cause`` label.

    >>> describe_cause("maxmemory")
    'Redis is at its memory limit (maxmemory); raise maxmemory or free memory'
    """
    return _CAUSES.get(cause, _CAUSES["error"])


def check_eviction_policy(client: redis.Redis, log: logging.Logger) -> str | None:
    """Warn when Redis would evict feature state at ``maxmemory``; the policy (None when Redis
    does not say, e.g. CONFIG is renamed away on a managed Redis: nothing is assumed then)."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.RedisError as exc:
        log.info("cannot read Redis's maxmemory-policy (%s); make sure it is noeviction", exc)
        return None
    policy = str(reply.get("maxmemory-policy", "")) or None
    if policy in EVICTING_POLICIES:
        log.warning(
            "Redis's maxmemory-policy is %s: at maxmemory it evicts feature state (every "
            "feature key has a TTL) and windows silently lose counts; set "
            "maxmemory-policy noeviction (docs/streaming.md, 'Redis memory')",
            policy,
            extra={"maxmemory_policy": policy},
        )
    return policy
