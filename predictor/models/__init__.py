"""The model lifecycle: train, write a verifiable artifact, register, promote, serve, reload.

``training`` fits LightGBM on a time split and checks it beats two baselines; ``artifact`` is
the on-disk format (text model, metadata, checksums) and the loaded ``EtaModel``; ``registry``
keeps versions and stage aliases; ``compiled`` scores through lleaves; ``handle`` follows a
stage and swaps models between batches.
"""

from __future__ import annotations

from predictor.models.artifact import EtaModel, load_artifact, write_artifact
from predictor.models.compiled import Scoring, with_scoring
from predictor.models.handle import ModelHandle, ShadowRecord, ShadowScorer
from predictor.models.registry import AliasMove, Registry

__all__ = [
    "AliasMove",
    "EtaModel",
    "ModelHandle",
    "Registry",
    "Scoring",
    "ShadowRecord",
    "ShadowScorer",
    "load_artifact",
    "with_scoring",
    "write_artifact",
]
