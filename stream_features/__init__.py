"""etastream's feature layer: event contract, feature definitions and the paths that compute them.

Everything the stream worker, the HTTP API, the batch job and the trainer must agree on lives
here, so that a feature means the same thing wherever it is computed.
"""

from __future__ import annotations

from stream_features import compiled

compiled.install()  # before any submodule: a stale compiled module is never loaded

__all__: list[str] = []
