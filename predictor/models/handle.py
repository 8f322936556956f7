"""Hot reload: follow a registry stage and swap models between batches, never inside one.

A ``ModelHandle`` keeps one loaded model. A background thread listens on the registry's Redis
channel (instant) and GETs the stage pointer at most every ``poll_s`` (in case a message was
missed), or reads the local alias file when there is no Redis. A new version is loaded and
verified in that thread; only then is the reference swapped, so ``current()`` costs nothing
and a caller that calls it once per batch scores each batch with exactly one version. A
version that fails to load is logged and the old one kept.

Scoring: ``lightgbm`` uses LightGBM's predict; ``compiled`` compiles before the swap (a failed
compile is a failed load); ``auto`` swaps the new version in at once on LightGBM and replaces
it with its compiled twin when lleaves has built it (seconds to minutes for a cold cache; run
``eta models compile`` before promoting to have it warm).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from predictor.errors import StageNotSetError
from predictor.models.artifact import EtaModel
from predictor.models.compiled import Scoring, lleaves_version, with_scoring
from predictor.models.registry import Registry
from predictor.models.shadow import ShadowRecord, ShadowScorer
from stream_features.redis_client import REDIS_ERRORS
from stream_features.settings import Settings

__all__ = ["ModelHandle", "ShadowRecord", "ShadowScorer"]  # shadow: re-exported

log = logging.getLogger(__name__)
_WAKE_S = 0.5
"""Longest the watcher blocks at a time, so ``close()`` returns promptly."""
_LOG_EVERY_S = 60.0
"""How often an unreachable Redis is logged again (the watcher retries every ``poll_s``)."""
RETRY_FAILED_S = 60.0
"""A version that failed to load is tried again after this long (a file may have been late)."""


class ModelHandle:
    """The model to use for the next batch, following ``name@stage`` without a restart."""

    @classmethod
    def following(
        cls, settings: Settings, client: redis.Redis, stage: str | None = None
    ) -> ModelHandle:
        """The handle a service keeps: ``settings.model_name`` at ``stage`` (the serve stage
        when None), its registry on ``client``, the settings' poll and scoring, waiting for a
        version to be promoted there."""
        return cls(
            Registry(settings.registry_dir, client),
            settings.model_name,
            stage or settings.serve_stage,
            client,
            settings.model_poll_s,
            scoring=settings.scoring,
            wait_for_stage=True,
        )

    def __init__(
        self,
        registry: Registry,
        name: str,
        stage: str,
        redis_client: redis.Redis | None = None,
        poll_s: float = 0.5,
        *,
        scoring: Scoring = "lightgbm",
        wait_for_stage: bool = False,
        on_swap: Callable[[EtaModel | None, EtaModel], None] | None = None,
    ) -> None:
        self.registry, self.name, self.stage = registry, name, stage
        self.poll_s, self.scoring = poll_s, scoring
        self._redis, self._on_swap = redis_client, on_swap
        self._model: EtaModel | None = None
        self._lock = threading.Lock()
        self._failed: tuple[str, float] | None = None
        self._last_poll = 0.0
        self.last_error: str | None = None
        self._redis_down_since: float | None = None  # monotonic, while Redis is unreachable
        self._redis_logged: float | None = None  # when that was last logged
        self.swaps = 0
        self.load_failures = 0  # versions its stage pointed at that could not be loaded
        self._pubsub: Any = self._subscribe() if redis_client is not None else None
        try:
            version = self._pointer()
            if version is not None:
                self._swap(self._load(version))  # errors surface here: nothing to fall back on
            elif not wait_for_stage:
                raise StageNotSetError(name, stage)
        except BaseException:
            self._drop_subscription()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"model-handle-{name}@{stage}", daemon=True
        )
        self._thread.start()

    # --- what callers use ---------------------------------------------------------------
    def current(self) -> EtaModel:
        """The model for the next batch; call once per batch and score the batch with it."""
        model = self._model
        if model is None:
            raise StageNotSetError(self.name, self.stage)
        return model

    def peek(self) -> EtaModel | None:
        """The current model, or None while the stage points at nothing (shadow handles)."""
        return self._model

    def status(self) -> dict[str, Any]:
        model = self._model
        return {
            "name": self.name,
            "stage": self.stage,
            "version": model.version if model else None,
            "backend": model.backend if model else None,
            "swaps": self.swaps,
            "load_failures": self.load_failures,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=_WAKE_S + 5.0)

    def __enter__(self) -> ModelHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the watcher --------------------------------------------------------------------
    def _pointer(self) -> str | None:
        if self._redis is None:
            return self.registry.aliases(self.name).get(self.stage)
        value = self._redis.get(self.registry.key(self.name, self.stage))
        if value is None:  # not mirrored (yet): the local file is the truth
            return self.registry.aliases(self.name).get(self.stage)
        return value.decode() if isinstance(value, bytes) else str(value)

    def _load(self, version: str) -> EtaModel:
        """LightGBM at once under ``auto`` (compiled later, see ``_upgrade``); compiled before
        use under ``compiled``, where a compile failure is a load failure."""
        model = self.registry.load(self.name, version)
        return with_scoring(model, "compiled") if self.scoring == "compiled" else model

    def _swap(self, model: EtaModel) -> None:
        with self._lock:
            self._model = model
        if self.scoring == "auto" and lleaves_version() is not None:
            threading.Thread(
                target=self._upgrade, args=(model,), name=f"compile-{self.name}", daemon=True
            ).start()

    def _upgrade(self, model: EtaModel) -> None:
        """Swap in the compiled twin of ``model`` once built, unless another version came.

        Runs in its own thread: while lleaves compiles (or another process does, and this one
        waits for its library) LightGBM scores, so the service never stalls on a compile.
        """
        log.info(
            "%s:%s scored by LightGBM until its compiled library is ready",
            model.name,
            model.version,
        )
        try:
            compiled = with_scoring(model, "auto")  # logs, returns ``model`` if it cannot compile
        except Exception:  # anything else: LightGBM keeps scoring, nothing is lost
            log.exception(
                "compiling %s:%s failed; LightGBM keeps scoring", model.name, model.version
            )
            return
        with self._lock:
            if compiled is not model and self._model is model:
                self._model = compiled
                log.info("%s:%s now scored compiled", model.name, model.version)

    def _subscribe(self) -> Any:
        """Subscribe and wait for the confirmation, so no move published after it is missed."""
        assert self._redis is not None
        pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis-py 8
        pubsub.subscribe(self.registry.channel)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message.get("type") == "subscribe":
                self._last_poll = 0.0  # a move made while unsubscribed is found by the next GET
                return pubsub
        pubsub.close()
        raise redis.TimeoutError(f"SUBSCRIBE {self.registry.channel} was not confirmed in 5 s")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                announced = None
                if self._redis is not None:
                    if self._pubsub is None:
                        self._pubsub = self._subscribe()
                    wait_s = min(self.poll_s, _WAKE_S)
                    announced = self._announced(self._pubsub.get_message(timeout=wait_s))
                else:
                    self._stop.wait(min(self.poll_s, _WAKE_S))
                self._check(announced)
                if self._redis_down_since is not None:
                    log.info(
                        "%s@%s reaches Redis again",
                        self.name,
                        self.stage,
                        extra={"down_s": round(time.monotonic() - self._redis_down_since, 1)},
                    )
                    self._redis_down_since = self._redis_logged = None
            except REDIS_ERRORS as exc:
                self.last_error = f"Redis: {exc}"
                now = time.monotonic()
                if self._redis_logged is None or now - self._redis_logged >= _LOG_EVERY_S:
                    log.warning(  # once, then once a minute: it retries every poll_s
                        "%s@%s cannot reach Redis (%s); keeping the current model",
                        self.name,
                        self.stage,
                        exc,
                    )
                    self._redis_logged = now
                if self._redis_down_since is None:
                    self._redis_down_since = now
                self._drop_subscription()
                self._stop.wait(self.poll_s)
            except Exception as exc:  # the watcher must outlive any one bad read
                self.last_error = str(exc)
                log.exception("%s@%s watcher: %s", self.name, self.stage, exc)
                self._stop.wait(self.poll_s)
        self._drop_subscription()

    def _drop_subscription(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
        self._pubsub = None

    def _announced(self, message: dict[str, Any] | None) -> str | None:
        if not message or message.get("type") != "message":
            return None
        try:
            move = orjson.loads(message["data"])
        except orjson.JSONDecodeError:
            return None
        if move.get("name") == self.name and move.get("stage") == self.stage:
            return str(move["to_version"])
        return None

    def _check(self, announced: str | None) -> None:
        target = announced
        now = time.monotonic()
        if target is None and now - self._last_poll >= self.poll_s:
            self._last_poll = now
            target = self._pointer()
        current = self._model
        if target is None or (current is not None and target == current.version):
            return
        if self._failed and self._failed[0] == target and now - self._failed[1] < RETRY_FAILED_S:
            return
        try:
            model = self._load(target)
        except Exception as exc:  # any failure: keep serving what we have, say why
            self._failed, self.last_error = (target, now), f"{self.name}:{target}: {exc}"
            self.load_failures += 1
            log.error(
                "could not load %s:%s for %s; keeping %s: %s",
                self.name,
                target,
                self.stage,
                current.version if current else "nothing",
                exc,
            )
            return
        self._swap(model)
        self._failed, self.last_error = None, None
        self.swaps += 1
        log.info(
            "%s@%s now %s (%s), was %s",
            self.name,
            self.stage,
            model.version,
            model.backend,
            current.version if current else "nothing",
        )
        if self._on_swap is not None:
            self._on_swap(current, model)
