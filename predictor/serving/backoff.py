"""How long to wait before trying a failed batch again: doubling, capped, never zero."""

from __future__ import annotations

__all__ = ["backoff_s"]


def backoff_s(attempt: int, base_s: float = 0.05, cap_s: float = 5.0) -> float:
    """Delay before retry number ``attempt`` (0 for the first retry).

    >>> [backoff_s(a) for a in range(4)], backoff_s(30)
    ([0.05, 0.1, 0.2, 0.4], 5.0)
    """
    return min(cap_s, base_s * float(2 ** min(attempt, 32)))
