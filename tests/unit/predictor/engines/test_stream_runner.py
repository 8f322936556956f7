"""``eta predict stream`` before it has a model: what it says while it waits, and how often."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from predictor.engines.runner import wait_for_model


class ArrivesAfter:
    """A handle whose stage points at nothing for the first ``misses`` looks."""

    def __init__(self, misses: int) -> None:
        self.looks, self._misses = 0, misses

    def peek(self) -> object | None:
        self.looks += 1
        return object() if self.looks > self._misses else None


def waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waiting for a model" in r.getMessage()]


def test_it_says_once_what_fixes_it_then_waits_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "etastream.stream")
    handle = ArrivesAfter(misses=50)
    found = wait_for_model(
        handle, threading.Event(), "eta@production", Path("models"), poll_s=0.001, every_s=3600
    )
    assert found and handle.looks == 51
    [line] = waiting_lines(caplog)  # was one a second, with no hint
    assert "eta@production (registry models)" in line
    assert "`eta train --training-set training_set.parquet --promote production`" in line
    assert "`eta models promote VERSION --stage production`" in line


def test_it_repeats_a_short_line_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "etastream.stream")
    found = wait_for_model(
        ArrivesAfter(misses=5),
        threading.Event(),
        "eta@staging",
        Path("m"),
        poll_s=0.01,
        every_s=0.0,
    )
    lines = waiting_lines(caplog)
    assert found and len(lines) == 5
    assert "--promote staging" in lines[0]
    assert all(line.startswith("still waiting for a model at eta@staging") for line in lines[1:])


def test_a_stop_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    assert not wait_for_model(ArrivesAfter(misses=10**9), stop, "eta@production", Path("m"))
