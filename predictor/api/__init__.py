"""The HTTP API (``eta serve``): online predictions and lookups of streamed and batch ones.

``create_app`` builds the FastAPI app from ready parts; ``wiring.build_app`` builds it from
``Settings``. See docs/serving.md.
"""

from __future__ import annotations

from predictor.api.app import create_app
from predictor.api.routes import ApiConfig, ModelSource

__all__ = ["ApiConfig", "ModelSource", "create_app"]
