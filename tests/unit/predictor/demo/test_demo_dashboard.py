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


def test_the_drift_shown_is_the_served_versions_or_with_too_few_samples_the_judged_one() -> None:
    """A version promoted seconds ago has too few predictions for a PSI: the dashboard shows
    the version with enough, named, and how many predictions the monitor has read (#22.8)."""
    from predictor.demo.dashboard import DriftRule, drift_text

    worker = 'eta_stream_predictions_total 5000\neta_stream_model_info{version="2"} 1\n'
    w = '{window="1h",model="eta:%s",feature="%s"}'
    monitor = (
        f'eta_monitor_drift_covered_seconds{{window="1h",model="eta:1"}} 3600\n'
        f'eta_monitor_drift_covered_seconds{{window="1h",model="eta:2"}} 60\n'
        f"eta_monitor_psi_samples{w % ('1', 'prediction')} 4950\n"
        f"eta_monitor_psi_samples{w % ('2', 'prediction')} 50\n"
        f"eta_monitor_psi{w % ('1', 'prediction')} 0.04\n"
        f"eta_monitor_psi{w % ('1', 'store__x')} 0.05\n"
        'eta_monitor_records_total{topic="delivery-eta-predictions"} 4990\n'
    )
    rule = DriftRule(window="1h", min_samples=200)
    tick = Tick(1.0, parse_metrics(worker), parse_metrics(monitor))
    f = figures(Tick(0.0), tick, "orders", rule)
    assert (f.drift_model, f.drift_samples, f.psi_max, f.features_over) == ("eta:1", 4950, 0.04, 0)
    assert f.monitored == 4990 < f.predictions
    assert drift_text(f, rule).startswith("eta:1 prediction 0.040")
