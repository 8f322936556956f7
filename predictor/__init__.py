"""etastream's predictor: models, the serving paths (stream, HTTP, batch) and monitoring."""

from __future__ import annotations

__all__: list[str] = []
