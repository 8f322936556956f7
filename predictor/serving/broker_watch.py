"""Noticing a hung broker from librdkafka's statistics, without I/O.

A broker that stops answering without closing its connections raises no client error: a
request just waits (up to ``socket.timeout.ms``, a minute by default) and the consumer sees
an empty stream, as it would on a quiet one. librdkafka's statistics tell the two apart: per
broker connection, ``waitresp_cnt`` (requests sent and not answered) and ``rxidle``
(microseconds since anything was received). A healthy broker answers the consumer's fetch
within ``fetch.wait.max.ms`` (50 ms here) even when there is nothing to fetch, so a connection
that owes answers and has received nothing for seconds is a hung broker (or network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BrokerWatch", "silent_s"]


def silent_s(stats: dict[str, Any]) -> float:
    """The longest a broker connection of this client has owed an answer and received
    nothing, in seconds (0 when none owes one).

    The group coordinator's connection (librdkafka's ``logical`` broker) is left out: a
    JoinGroup legitimately waits there until every member has rejoined (up to the rebalance
    timeout), while the data connections, which fetch and produce, answer within the fetch
    wait or not at all.

    >>> silent_s({"brokers": {"b1": {"waitresp_cnt": 1, "rxidle": 7_500_000},
    ...                       "b2": {"waitresp_cnt": 0, "rxidle": 90_000_000},
    ...                       "GroupCoordinator": {"source": "logical", "waitresp_cnt": 1,
    ...                                            "rxidle": 30_000_000}}})
    7.5
    >>> silent_s({"brokers": {}})
    0.0
    """
    worst = 0.0
    for broker in (stats.get("brokers") or {}).values():
        if broker.get("source") in ("logical", "internal"):
            continue
        if broker.get("waitresp_cnt", 0) > 0 and broker.get("rxidle", -1) > 0:
            worst = max(worst, broker["rxidle"] / 1e6)
    return worst


@dataclass
class BrokerWatch:
    """Whether the broker has gone silent, from each client's latest statistics.

    >>> w = BrokerWatch(stall_s=5.0)
    >>> w.observe("consumer", {"brokers": {"b": {"waitresp_cnt": 1, "rxidle": 3_000_000}}})
    >>> w.observe("consumer", {"brokers": {"b": {"waitresp_cnt": 1, "rxidle": 6_000_000}}})
    'stalled'
    >>> w.observe("producer", {"brokers": {}})  # the consumer's connection is still silent
    >>> w.observe("consumer", {"brokers": {"b": {"waitresp_cnt": 1, "rxidle": 20_000}}})
    'answering'
    >>> w.longest_s
    6.0
    """

    stall_s: float
    silent: dict[str, float] = field(default_factory=dict)
    stalled: bool = False
    longest_s: float = 0.0  # the longest silence seen during the last stall

    def observe(self, client: str, stats: dict[str, Any]) -> str | None:
        """``"stalled"`` when a stall starts, ``"answering"`` when it ends, else None."""
        self.silent[client] = silent_s(stats)
        worst = max(self.silent.values())
        if worst >= self.stall_s:
            self.longest_s = max(self.longest_s, worst) if self.stalled else worst
            if not self.stalled:
                self.stalled = True
                return "stalled"
        elif self.stalled:
            self.stalled = False
            return "answering"
        return None
