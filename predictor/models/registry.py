"""A model registry in a plain directory, with stages as movable aliases.

Layout under the root::

    <name>/<version>/        one artifact per version ("1", "2", ...; never reused)
    <name>/aliases.json      {"production": "3", "staging": "4"}: replaced atomically per move
    <name>/history.jsonl     one line per move: who, when, stage, from, to, action
    <name>/last_version      the highest version ever handed out

A stage is an alias, as in MLflow: any name pointing at one version of one model name. Moves
and registrations take a per-name file lock, so two shells cannot hand out one version twice
or lose a move. Every move is mirrored to Redis (``<prefix>:<name>:<stage>`` = version, and a
PUBLISH on ``<prefix>``) so services learn of it without a restart; with no Redis client the
registry works locally and the move reports it was not mirrored.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import redis

from predictor.errors import (
    ArtifactError,
    ModelNotFoundError,
    NothingToRollBackError,
    RegistryNameError,
    StageNotSetError,
)
from predictor.models.artifact import (
    CHECKSUM_FILE,
    METADATA_FILE,
    MODEL_FILE,
    RANGE_FILES,
    EtaModel,
    atomic_write,
    load_artifact,
    range_texts,
    write_artifact,
)
from stream_features.redis_client import REDIS_ERRORS, is_cluster

__all__ = ["DEFAULT_KEY_PREFIX", "AliasMove", "Registry", "check_name", "version_key"]

log = logging.getLogger(__name__)
DEFAULT_KEY_PREFIX = "eta:registry"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(kind: str, value: str) -> str:
    """``value`` if it is a safe single path component, else RegistryNameError.

    >>> check_name("model name", "eta-v2.1")
    'eta-v2.1'
    >>> check_name("version", "../../x")
    Traceback (most recent call last):
    ...
    predictor.errors.RegistryNameError: version '../../x' is not allowed: ...
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise RegistryNameError(kind, str(value))
    return value


def version_key(version: str) -> tuple[int, int, str]:
    """Numeric versions in numeric order, then any others by name.

    >>> sorted(["10", "9", "v1"], key=version_key)
    ['9', '10', 'v1']
    """
    digits = version.removeprefix("v")
    return (0, int(digits), version) if digits.isdigit() and version.isdigit() else (1, 0, version)


@dataclass(frozen=True)
class AliasMove:
    """One move of a stage, as kept in history (``redis_updated`` is about this call only)."""

    name: str
    stage: str
    from_version: str | None
    to_version: str
    action: Literal["promote", "rollback"]
    who: str
    at: str
    redis_updated: bool = False


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return f"uid:{os.getuid()}"


class Registry:
    """Model versions under ``root``; stage pointers mirrored to Redis when a client is given."""

    def __init__(
        self,
        root: Path,
        redis_client: redis.Redis | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> None:
        self.root = Path(root).resolve()
        self.redis = redis_client
        self.key_prefix = key_prefix

    # --- paths --------------------------------------------------------------------------
    def _model_dir(self, name: str) -> Path:
        path = (self.root / check_name("model name", name)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise RegistryNameError("model name", name)
        return path

    def path(self, name: str, version: str) -> Path:
        """The directory of ``name:version``, which must exist under the root, with every file
        a load reads there too (a symlink out of the root is refused)."""
        path = (self._model_dir(name) / check_name("version", version)).resolve()
        if not path.is_relative_to(self.root):
            raise RegistryNameError("version", version)
        if not (path / CHECKSUM_FILE).is_file():
            raise ModelNotFoundError(self.root, name, version)
        compiled = path / "compiled"
        read = [path / f for f in (MODEL_FILE, METADATA_FILE, CHECKSUM_FILE, *RANGE_FILES)]
        read = [f for f in read if f.name not in RANGE_FILES or f.exists() or f.is_symlink()]
        if compiled.is_dir():
            read += [compiled, *compiled.iterdir()]
        for file in read:
            if not file.resolve().is_relative_to(self.root):
                raise ArtifactError(
                    path,
                    f"{file.relative_to(path)} leads to {file.resolve()}, outside the registry "
                    f"at {self.root}; artifacts load only from inside it",
                )
        return path

    def key(self, name: str, stage: str) -> str:
        return f"{self.key_prefix}:{name}:{stage}"

    @property
    def channel(self) -> str:
        return self.key_prefix

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        directory = self._model_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield directory
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- reading ------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))

    def versions(self, name: str) -> list[str]:
        directory = self._model_dir(name)
        if not directory.is_dir():
            return []
        found = [
            p.name
            for p in directory.iterdir()
            if _NAME.fullmatch(p.name) and (p / CHECKSUM_FILE).is_file()
        ]
        return sorted(found, key=version_key)

    def aliases(self, name: str) -> dict[str, str]:
        file = self._model_dir(name) / "aliases.json"
        if not file.is_file():
            return {}
        data: dict[str, str] = orjson.loads(file.read_bytes())
        return data

    def resolve(self, name: str, stage: str) -> str:
        """The version ``stage`` points at in the local registry."""
        version = self.aliases(name).get(check_name("stage", stage))
        if version is None:
            raise StageNotSetError(name, stage)
        return version

    def live_version(self, name: str, stage: str) -> str | None:
        """The pointer services follow: Redis when mirrored there, else the local file."""
        if self.redis is not None:
            value = self.redis.get(self.key(name, check_name("stage", stage)))
            if value is not None:
                return value.decode() if isinstance(value, bytes) else str(value)
        return self.aliases(name).get(check_name("stage", stage))

    def load(self, name: str, version: str) -> EtaModel:
        """A verified model from the registry (LightGBM scoring; see ``compiled.with_scoring``)."""
        return load_artifact(self.path(name, version))

    def history(self, name: str, stage: str | None = None) -> list[AliasMove]:
        file = self._model_dir(name) / "history.jsonl"
        if not file.is_file():
            return []
        moves = [AliasMove(**orjson.loads(line)) for line in file.read_bytes().splitlines() if line]
        return [m for m in moves if stage is None or m.stage == stage]

    # --- writing ------------------------------------------------------------------------
    def register(self, artifact_dir: Path, name: str | None = None) -> str:
        """Copy a verified artifact in as the next version of ``name``; returns the version."""
        source = load_artifact(Path(artifact_dir))  # refuses tampered or foreign artifacts
        name = check_name("model name", source.name if name is None else name)
        model_text = (source.path / MODEL_FILE).read_text()
        metadata: dict[str, Any] = {
            **source.metadata,
            "name": name,
            "registered_at": datetime.now(UTC).isoformat(),
            "registered_by": _user(),
        }
        with self._locked(name) as directory:
            counter = directory / "last_version"
            last = int(counter.read_text()) if counter.is_file() else 0
            numeric = [int(v) for v in self.versions(name) if v.isdigit()]
            version = str(max([last, *numeric]) + 1)
            staging = Path(tempfile.mkdtemp(dir=directory, prefix=".incoming-"))
            staging.chmod(0o755)
            try:
                write_artifact(
                    staging,
                    model_text,
                    {**metadata, "version": version},
                    range_texts(source.path, source.metadata),
                )
                os.rename(staging, directory / version)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            atomic_write(counter, version.encode())
        log.info("registered %s:%s from %s", name, version, artifact_dir)
        return version

    def promote(self, name: str, version: str, stage: str) -> AliasMove:
        """Point ``stage`` at ``version`` (one atomic write), record it, mirror it to Redis."""
        check_name("stage", stage)
        load_artifact(self.path(name, version))  # never point a stage at a broken artifact
        return self._move(name, stage, lambda _current, _stack: version, "promote")

    def rollback(self, name: str, stage: str = "production") -> AliasMove:
        """Point ``stage`` back at the version it pointed at before its latest move."""
        check_name("stage", stage)

        def previous(current: str | None, stack: list[str]) -> str:
            if len(stack) < 2:
                raise NothingToRollBackError(name, stage, current)
            return stack[-2]

        return self._move(name, stage, previous, "rollback")

    def _move(
        self,
        name: str,
        stage: str,
        target: Any,
        action: Literal["promote", "rollback"],
    ) -> AliasMove:
        with self._locked(name) as directory:
            aliases = self.aliases(name)
            current = aliases.get(stage)
            version: str = target(current, self._stack(name, stage))
            self.path(name, version)
            move = AliasMove(
                name, stage, current, version, action, _user(), datetime.now(UTC).isoformat()
            )
            if current != version or action == "rollback":
                aliases[stage] = version
                atomic_write(directory / "aliases.json", orjson.dumps(aliases))
                record = {k: v for k, v in asdict(move).items() if k != "redis_updated"}
                with (directory / "history.jsonl").open("ab") as fh:
                    fh.write(orjson.dumps(record) + b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        log.info("%s %s@%s: %s -> %s", action, name, stage, current, version)
        return replace(move, redis_updated=self._mirror(move))

    def _stack(self, name: str, stage: str) -> list[str]:
        """Versions the stage went through, with rolled-back moves taken off again."""
        stack: list[str] = []
        for move in self.history(name, stage):
            if move.action == "rollback" and stack:
                stack.pop()
            else:
                stack.append(move.to_version)
        return stack

    def _mirror(self, move: AliasMove) -> bool:
        """SET the stage's pointer, then PUBLISH the move; whether the pointer was set.

        On one Redis both go in one MULTI, so a subscriber never hears of a move the pointer
        does not show yet. A cluster runs no MULTI with PUBLISH (it has no key, and redis-py
        refuses it in a cluster pipeline), so there the SET goes first and the PUBLISH after
        it, which keeps that order: any node delivers the message to every subscriber. A
        PUBLISH that fails after the SET still counts as mirrored: the pointer is what
        services follow, and handles poll it when a message is missed.
        """
        if self.redis is None:
            return False
        key = self.key(move.name, move.stage)
        message = orjson.dumps({k: v for k, v in asdict(move).items() if k != "redis_updated"})
        try:
            if is_cluster(self.redis):
                self.redis.set(key, move.to_version)
            else:
                pipe = self.redis.pipeline(transaction=True)
                pipe.set(key, move.to_version)
                pipe.publish(self.channel, message)
                pipe.execute()
                return True
        except REDIS_ERRORS as exc:
            log.warning("%s@%s moved locally, Redis not updated: %s", move.name, move.stage, exc)
            return False
        try:  # a cluster's PUBLISH, once the pointer is set
            self.redis.publish(self.channel, message)
        except REDIS_ERRORS as exc:
            log.warning(
                "%s@%s pointer set in Redis but the move not published (handles see it at their "
                "next poll): %s",
                move.name,
                move.stage,
                exc,
            )
        return True

    def append_decision(self, name: str, record: dict[str, Any]) -> None:
        """Keep a promotion decision (``guard``) in ``<name>/decisions.jsonl``, fsynced."""
        with self._locked(name) as directory, (directory / "decisions.jsonl").open("ab") as fh:
            fh.write(orjson.dumps(record) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def decisions(self, name: str) -> list[dict[str, Any]]:
        """Every promotion decision kept for ``name``, oldest first."""
        file = self._model_dir(name) / "decisions.jsonl"
        if not file.is_file():
            return []
        return [orjson.loads(line) for line in file.read_bytes().splitlines() if line]

    def sync_redis(self, name: str | None = None) -> int:
        """Write every local stage pointer to Redis (after Redis lost its data); count them."""
        if self.redis is None:
            return 0
        count = 0
        for model in [name] if name else self.names():
            for stage, version in self.aliases(model).items():
                self.redis.set(self.key(model, stage), version)
                count += 1
        return count
