"""Event producers: the marketplace simulator, history writer, replay and topic tools.

Depends on the contract in ``stream_features`` and nothing else of etastream.
"""

from __future__ import annotations

__all__: list[str] = []
