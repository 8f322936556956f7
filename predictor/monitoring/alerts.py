"""Threshold crossings as events: one alert when a value goes above, one when it clears.

The monitor re-reads every watched value after each batch; ``AlertBook`` remembers which are
firing, so a value that stays above its threshold raises one alert, not one per batch. A value
clears when it falls below ``threshold * (1 - hysteresis)`` (so noise around the threshold does
not flap), or when its group has no data left in the window. A value read over fewer than
``min_samples`` observations never starts an alert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from predictor.monitoring.messages import AlertKind, MonitorAlert

__all__ = ["AlertBook", "Observation"]

_Key = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class Observation:
    """One watched value as read over the alert window."""

    kind: AlertKind
    scope: str
    key: str
    feature: str | None
    value: float
    threshold: float
    samples: int

    @property
    def ident(self) -> _Key:
        return (self.kind, self.scope, self.key, self.feature)


class AlertBook:
    """Which watched values are above their threshold, and the alerts their crossings make.

    >>> from datetime import UTC, datetime
    >>> book, t = AlertBook(min_samples=10), datetime(2026, 1, 1, tzinfo=UTC)
    >>> high = Observation("mae", "market", "m1", None, 1000.0, 900.0, 50)
    >>> [a.state for a in book.update([high], "1h", t, t)]
    ['firing']
    >>> book.update([high], "1h", t, t)  # still above: nothing new
    []
    >>> low = Observation("mae", "market", "m1", None, 850.0, 900.0, 50)
    >>> book.update([low], "1h", t, t)  # inside the hysteresis band
    []
    >>> [a.state for a in book.update([], "1h", t, t)]  # no data left in the window
    ['resolved']
    """

    def __init__(self, min_samples: int, hysteresis: float = 0.1) -> None:
        self.min_samples, self.hysteresis = min_samples, hysteresis
        self.firing: dict[_Key, Observation] = {}
        self.raised = 0

    def update(
        self,
        observations: Iterable[Observation],
        window: str,
        event_time: datetime,
        now: datetime,
    ) -> list[MonitorAlert]:
        """The alerts the new readings make (every watched value of the window, each once)."""
        out: list[MonitorAlert] = []
        seen: set[_Key] = set()
        for obs in observations:
            ident = obs.ident
            seen.add(ident)
            if ident in self.firing:
                if obs.value < obs.threshold * (1 - self.hysteresis):
                    del self.firing[ident]
                    out.append(self._alert(obs, "resolved", window, event_time, now))
                else:
                    self.firing[ident] = obs
            elif obs.value > obs.threshold and obs.samples >= self.min_samples:
                self.firing[ident] = obs
                out.append(self._alert(obs, "firing", window, event_time, now))
        for ident in [i for i in self.firing if i not in seen]:
            last = self.firing.pop(ident)
            gone = Observation(
                last.kind, last.scope, last.key, last.feature, last.value, last.threshold, 0
            )
            out.append(self._alert(gone, "resolved", window, event_time, now))
        self.raised += sum(a.state == "firing" for a in out)
        return out

    @staticmethod
    def _alert(
        obs: Observation, state: str, window: str, event_time: datetime, now: datetime
    ) -> MonitorAlert:
        return MonitorAlert(
            kind=obs.kind,
            state=state,
            window=window,
            scope=obs.scope,
            key=obs.key,
            feature=obs.feature,
            value=obs.value,
            threshold=obs.threshold,
            samples=obs.samples,
            event_time=event_time,
            raised_at=now,
        )
