"""One retraining at a time, off the monitor's loop: started by alerts, collected when done.

The loop must keep consuming while a model trains (minutes on a day of pairs), so the run goes
to a thread of its own; the loop asks for its report between batches and publishes it. A run
that fails is reported as ``failed``, never fatal to the monitor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from predictor.monitoring.messages import MonitorAlert, RetrainReport
from predictor.monitoring.retrain import RetrainTrigger

__all__ = ["RetrainJob", "Retrainer"]

log = logging.getLogger("etastream.monitor")
Retrainer = Callable[[str], RetrainReport]
"""Runs one retraining (given what triggered it) and reports its outcome."""


class RetrainJob:
    def __init__(self, retrainer: Retrainer, cooldown_s: float) -> None:
        self._retrainer = retrainer
        self._trigger = RetrainTrigger(cooldown_s)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="eta-retrain")
        self._running: Future[RetrainReport] | None = None
        self.runs = 0

    def maybe_start(self, alerts: Sequence[MonitorAlert], before: Callable[[], None]) -> bool:
        """Start a run when an MAE or PSI alert fires (cooldown permitting); ``before`` runs
        first in the caller's thread (the loop flushes the pairs the run will read)."""
        if self._running is not None:
            return False
        firing = [
            f"{a.kind} {a.key} {a.feature or ''}".strip()
            for a in alerts
            if a.state == "firing" and a.kind in ("mae", "psi")
        ]
        reason = self._trigger.due(firing, time.monotonic())
        if reason is None:
            return False
        before()
        log.info("retraining", extra={"trigger": reason})
        self.runs += 1
        self._running = self._pool.submit(self._retrainer, reason)
        return True

    def collect(self, wait: bool = False) -> RetrainReport | None:
        """The finished run's report (waiting for it if asked), or None."""
        job = self._running
        if job is None or (not wait and not job.done()):
            return None
        self._running = None
        try:
            report = job.result()
        except Exception as exc:
            log.exception("retraining failed")
            report = RetrainReport(
                model_name="?",
                trigger="?",
                outcome="failed",
                reason=repr(exc),
                rows=0,
                at=datetime.now(UTC),
            )
        if report.outcome == "skipped":
            self._trigger.release()
        log.info("retraining done: %s", report.reason, extra={"outcome": report.outcome})
        return report

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
