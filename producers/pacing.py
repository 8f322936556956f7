"""Waiting for a wall-clock instant without starving the producer's delivery callbacks."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(
    target: float, clock: Callable[[], float], wait: Callable[[float], None], step_s: float = 0.1
) -> float:
    """Call ``wait`` (e.g. ``Publisher.poll``) in short steps until ``clock() >= target``.

    Returns how long it waited. ``wait`` may return early (a callback was served); the loop
    goes on until the target.

    >>> now = [0.0]
    >>> wait_until(0.25, lambda: now[0], lambda s: now.__setitem__(0, now[0] + s))
    0.25
    """
    start = clock()
    remaining = target - start
    while remaining > 0:
        wait(min(remaining, step_s))
        remaining = target - clock()
    return max(0.0, clock() - start)
