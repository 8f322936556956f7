"""The tests' one way to wait: poll a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(
    condition: Callable[[], object],
    timeout_s: float = 5.0,
    what: str = "the condition",
    interval_s: float = 0.01,
) -> None:
    """Poll ``condition`` until it is true; fail saying ``what`` did not happen in time.

    >>> wait_until(lambda: True, 0.1)
    >>> wait_until(lambda: False, 0.05, "nothing")
    Traceback (most recent call last):
    ...
    AssertionError: nothing: not within 0.05 s
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)
