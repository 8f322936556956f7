"""A small real model in a test's own registry, at a model name no other test uses."""

from __future__ import annotations

import uuid
from pathlib import Path

from stream_features.definitions import feature_names
from stream_features.settings import Settings

__all__ = ["register_shuffled", "registered_model"]


def registered_model(settings: Settings, tmp_path: Path) -> Settings:
    """Train a tiny LightGBM model, register it and point ``serve_stage`` at it.

    The model name is unique so that no other test's Redis-mirrored stage pointer applies.
    """
    from predictor.models.dataset import split_by_time
    from predictor.models.registry import Registry
    from predictor.models.synthetic import synthetic_training_set
    from predictor.models.training import TrainConfig
    from predictor.models.workflow import train_to_artifact

    name = f"eta-{uuid.uuid4().hex[:8]}"
    split = split_by_time(synthetic_training_set(3000, seed=0), feature_names(), 0.2)
    artifact = tmp_path / "artifact"
    config = TrainConfig(num_boost_round=40, early_stopping_rounds=10, learning_rate=0.1)
    train_to_artifact(
        split, artifact, name=name, training_set="generated", config=config, force=True
    )
    served = settings.model_copy(update={"model_name": name, "metrics_port": 0})
    registry = Registry(served.registry_dir)
    version = registry.register(artifact, name)
    registry.promote(name, version, served.serve_stage)
    return served


def register_shuffled(settings: Settings, tmp_path: Path) -> str:
    """The champion's recipe on shuffled labels, registered and put at staging."""
    import polars as pl

    from predictor.models.dataset import split_by_time
    from predictor.models.registry import Registry
    from predictor.models.synthetic import LABEL, synthetic_training_set
    from predictor.models.training import TrainConfig
    from predictor.models.workflow import train_to_artifact

    frame = synthetic_training_set(3000, seed=0)
    frame = frame.with_columns(pl.col(LABEL).shuffle(seed=7))
    split = split_by_time(frame, feature_names(), 0.2)
    artifact = tmp_path / "shuffled"
    config = TrainConfig(num_boost_round=40, early_stopping_rounds=10, learning_rate=0.1)
    train_to_artifact(
        split,
        artifact,
        name=settings.model_name,
        training_set="shuffled",
        config=config,
        force=True,
    )
    registry = Registry(settings.registry_dir)
    version = registry.register(artifact, settings.model_name)
    registry.promote(settings.model_name, version, "staging")
    return version
