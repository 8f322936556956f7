"""Errors of the stream engines, under ``EtaError`` like every other.

EtaError
└── EngineConfigError   500  settings the chosen engine cannot run with
"""

from __future__ import annotations

from stream_features.errors import EtaError

__all__ = ["EngineConfigError"]


class EngineConfigError(EtaError):
    """What is wrong with the configuration, and what to do instead."""

    http_status = 500
