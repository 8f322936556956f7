"""The demo dashboard's latency row: live traffic only, the warm-up backlog labelled (#22.7)."""

from __future__ import annotations

from rich.console import Console

from predictor.demo.dashboard import Tick, figures, render
from predictor.demo.scrape import parse_metrics

_LATENCY = "eta_stream_end_to_end_latency_seconds"


def _worker(lag: int, old: int, slow: int) -> str:
    """A worker's page: ``old`` orders acked within 0.1 s and ``slow`` after 300 s so far."""
    return (
        f'eta_stream_events_total{{topic="orders"}} {old + slow}\n'
        f'{_LATENCY}_bucket{{le="0.1"}} {old}\n'
        f'{_LATENCY}_bucket{{le="600.0"}} {old + slow}\n'
        f'{_LATENCY}_bucket{{le="+Inf"}} {old + slow}\n'
        f'eta_stream_consumer_lag{{topic="orders",partition="0"}} {lag}\n'
    )


def _shown(lag: int) -> tuple[float | None, str]:
    before = Tick(0.0, parse_metrics(_worker(lag, 0, 0)))
    after = Tick(1.0, parse_metrics(_worker(lag, 0, 5000)))  # 5,000 orders 300 s old
    f = figures(before, after, "orders")
    console = Console(width=200, record=True)
    console.print(render(f, after, "live", ""))
    return f.p99_ms, console.export_text()


def test_a_worker_draining_the_backlog_shows_no_latency_but_how_far_behind_it_is() -> None:
    p99, text = _shown(lag=40_000)
    assert p99 is None
    assert "catching up on the warm-up backlog, 40,000 records behind" in text
    assert "300,000" not in text


def test_a_worker_that_keeps_up_shows_the_interval_latency() -> None:
    p99, text = _shown(lag=3)
    assert p99 is not None and p99 > 100_000  # what this interval acknowledged, as it was
    assert "catching up" not in text
