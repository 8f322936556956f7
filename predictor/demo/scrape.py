"""Read services' Prometheus endpoints into the few figures the demo dashboard shows.

The dashboard learns what the services do the way an operator would, from their ``/metrics``,
so it shows nothing the services do not publish. Rates and latency quantiles come from the
difference between two scrapes, so they describe the last interval, not the whole run (the
warm-up burst of old orders would otherwise swamp the latency of live ones).
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Sample", "Scrape", "parse_metrics", "quantile_between", "scrape"]

Sample = tuple[str, tuple[tuple[str, str], ...]]
"""A sample's name and its sorted labels."""


@dataclass
class Scrape:
    """Every sample of one scrape, by name and labels."""

    values: dict[Sample, float] = field(default_factory=dict)

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and want <= set(ls))

    def label_values(self, name: str, label: str) -> list[str]:
        """The values ``label`` takes on samples called ``name`` that are set (non-zero)."""
        return sorted(
            dict(ls)[label]
            for (n, ls), v in self.values.items()
            if n == name and v and label in dict(ls)
        )

    def buckets(self, name: str) -> dict[float, float]:
        """A histogram's cumulative bucket counts by upper bound (``name`` without _bucket)."""
        out: dict[float, float] = {}
        for (n, ls), v in self.values.items():
            if n == f"{name}_bucket":
                le = float(dict(ls)["le"])
                out[le] = out.get(le, 0.0) + v
        return out


def parse_metrics(text: str) -> Scrape:
    """Parse Prometheus text exposition.

    >>> s = parse_metrics('x_total{topic="a"} 3\\nx_total{topic="b"} 4\\n')
    >>> s.total("x_total"), s.total("x_total", topic="b")
    (7.0, 4.0)
    """
    out = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def scrape(url: str, timeout_s: float = 1.0) -> Scrape | None:
    """One scrape of ``url``; None when the service does not answer (yet, or any more)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_metrics(response.read().decode())
    except (OSError, ValueError):
        return None


def quantile_between(
    before: Mapping[float, float], after: Mapping[float, float], q: float
) -> float | None:
    """The ``q`` quantile of the observations made between two scrapes of one histogram.

    Linear within the bucket, as Prometheus' ``histogram_quantile`` does; None without new
    observations; the largest finite bound when it falls in the +Inf bucket.

    >>> quantile_between({0.01: 0, 0.1: 0, math.inf: 0}, {0.01: 50, 0.1: 100, math.inf: 100}, 0.5)
    0.01
    >>> quantile_between({0.01: 0, 0.1: 0, math.inf: 0}, {0.01: 50, 0.1: 100, math.inf: 100}, 0.75)
    0.055
    """
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return round(lower + (bound - lower) * share, 9)
        lower, below = bound, cumulative
    return lower
