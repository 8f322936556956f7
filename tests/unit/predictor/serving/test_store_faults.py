"""The worker and the API name a full Redis as such, and warn of an evicting policy."""

from __future__ import annotations

import logging

import pytest
import redis

from predictor.serving.store_faults import (
    EVICTING_POLICIES,
    check_eviction_policy,
    describe_cause,
    feature_store_cause,
)


class _Config:
    """A Redis that answers CONFIG GET maxmemory-policy (or refuses CONFIG)."""

    def __init__(self, policy: str | None) -> None:
        self.policy = policy

    def config_get(self, pattern: str) -> dict[str, str]:
        if self.policy is None:
            raise redis.ResponseError("unknown command 'CONFIG'")
        return {pattern: self.policy}


@pytest.mark.parametrize("policy", sorted(EVICTING_POLICIES))
def test_evicting_policy_warns(policy: str, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.store_faults")
    with caplog.at_level(logging.INFO, log.name):
        assert check_eviction_policy(_Config(policy), log) == policy  # type: ignore[arg-type]  # a fake client
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert policy in record.getMessage() and "noeviction" in record.getMessage()


def test_noeviction_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.store_faults")
    with caplog.at_level(logging.INFO, log.name):
        assert check_eviction_policy(_Config("noeviction"), log) == "noeviction"  # type: ignore[arg-type]  # a fake client
    assert not caplog.records


def test_config_refused_is_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.store_faults")
    with caplog.at_level(logging.INFO, log.name):
        assert check_eviction_policy(_Config(None), log) is None  # type: ignore[arg-type]  # a fake client
    assert "noeviction" in caplog.records[0].getMessage()


def test_oom_inside_a_transaction_is_maxmemory() -> None:
    # redis-py annotates the queued command's error before raising it from EXEC
    exc = redis.exceptions.OutOfMemoryError(
        "Command # 1 (HSET k f v) of pipeline caused error: OOM command not allowed when "
        "used memory > 'maxmemory'."
    )
    assert feature_store_cause(exc) == "maxmemory"
    assert feature_store_cause(redis.ResponseError("WRONGTYPE")) == "error"
    assert "maxmemory" in describe_cause("maxmemory")
