"""What ``eta demo`` runs, as plain data: the same ``eta`` commands the README teaches.

Every step is a real command run as its own process against the embedded stack, so the demo
shows exactly what a user would get by typing them; this module only decides their arguments.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

__all__ = ["ETA", "DemoConfig", "Step", "history_end", "live_traffic", "prepare_steps"]

ETA = [sys.executable, "-c", "from predictor.cli import main; main()"]
"""``eta`` run by this interpreter (works in a venv whose scripts are not on PATH)."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs; the defaults finish in about three minutes on two cores."""

    out_dir: Path = Path("eta-demo")
    history_hours: float = 4.0
    stores: int = 300
    markets: int = 4
    rate: float = 6.0
    """Orders per second, live and in the history alike (so the model sees the load it
    will serve)."""
    live_s: float = 60.0
    warmup_s: float = 9000.0
    """Simulated past sent at once when traffic starts: its deliveries keep arriving live, so
    accuracy is measured from the first seconds. It is ``settle_s`` plus the drift window: the
    live stream starts as empty as the history did, so only orders ``settle_s`` into it have
    windows as full as the training rows' (60-minute counts, outstanding orders, deliveries of
    hour-long orders), and the monitor's drift window (``drift_window``) must hold only those.
    With 5400 s (= ``settle_s``) the 1 h window reached back to orders 30 min into the stream,
    with no delivery counted yet: PSI 8 on store__deliveries__60m in a no-shock run."""
    settle_s: float = 5400.0
    """The history's first seconds, simulated but given no training rows: the windows of a
    stream that has just started are still filling (60-minute counts, outstanding orders)."""
    label_tail_s: float = 7200.0
    """The history's last seconds, simulated but given no training rows: an order is labelled
    only if delivered before the history ends, so the last hour's rows would be the quick
    deliveries only (fast stores, quiet moments; PSI 0.15-0.2 on the stores' 28-day means and
    a model biased fast). Two hours cover the loaded marketplace's hour-long deliveries."""
    burn_in_s: int = 10800
    """Simulated before the history and the live traffic and not sent: both open on a running
    marketplace (queues, busy dashers), not an empty one."""
    backfill_weeks: int = 2
    """Earlier weeks of sparse history (the same clock hours at a quarter of the rate), so the
    28-day batch features of the training rows are computed from data. Each week runs on past
    the history's end through the live phase (``--backfill-past-end``): the live orders read
    the hour-of-week keys of their own clock hours, which had no data (PSI 6.4 on
    store_how__delivery_duration_mean__28d in a no-shock run), and on by the rest of that
    clock hour and ``label_tail_s``, so those hours' orders are all delivered (cut off minutes
    after the live phase, the means held only quick deliveries: PSI 0.3-3.4)."""
    steady: bool = True
    """A marketplace without daily peaks or supply drift: the live traffic then follows the
    same distribution as the hours of history before it (``--steady``)."""
    drift_window: str = "1h"
    """The monitor's drift alert window (``ETA_MONITOR_DRIFT_WINDOW``). A steady marketplace
    has no daily cycle, the reason the default waits for 24 h, so an hour is a fair sample and
    is full before the live phase (the warm-up is longer)."""
    max_rounds: int = 150
    seed: int = 0
    shock: str | None = "m1:dasher_shortage:{half}:0.3"
    """A drift to show the monitor working; ``{half}`` is the middle of the live phase."""

    @property
    def model_name(self) -> str:
        return "eta"


@dataclass(frozen=True)
class Step:
    """One command of the demo, and what it is for (shown beside its progress)."""

    key: str
    title: str
    argv: list[str]


def prepare_steps(config: DemoConfig, history_end: datetime) -> list[Step]:
    """History → batch features → training set → two models (the first in production).

    The history ends where the live warm-up starts, so no instant is simulated twice.

    >>> from datetime import UTC
    >>> steps = prepare_steps(DemoConfig(out_dir=Path("d")), datetime(2026, 1, 2, tzinfo=UTC))
    >>> [s.key for s in steps]
    ['history', 'batch', 'training-set', 'train-v1', 'train-v2']
    >>> steps[0].argv[-2:]
    ['--end', '2026-01-02T00:00:00+00:00']
    """
    d = config.out_dir
    history, training = d / "history.parquet", d / "training_set.parquet"
    world = [
        "--stores",
        str(config.stores),
        "--markets",
        str(config.markets),
        "--seed",
        str(config.seed),
        *_sim_args(config),
    ]
    rows_until = history_end - timedelta(seconds=config.label_tail_s)
    rows_since = rows_until - timedelta(hours=config.history_hours)
    history_s = config.settle_s + config.history_hours * 3600 + config.label_tail_s
    # through the live phase, its drain and the rest of its clock hour, plus label_tail_s: the
    # live orders read the hour-of-week means of their clock hour in earlier weeks, and a
    # backfill week that stopped minutes after it counted only the quick deliveries of that
    # hour (the long ones were not delivered yet): means biased fast, PSI 0.3-3.4 on
    # store_how__delivery_duration_mean__28d in a no-shock run
    past_end = config.warmup_s + config.live_s + 600 + 3600 + config.label_tail_s
    batch_as_of = history_end.replace(hour=0, minute=0)  # as a nightly batch job would
    train = ["train", "--training-set", str(training), "--max-rounds", str(config.max_rounds)]
    return [
        Step(
            "history",
            f"simulate {config.history_hours:g} hours of marketplace history",
            [
                *ETA,
                "produce",
                "history",
                "--out",
                str(history),
                "--days",
                f"{history_s / 86400:g}",
                "--backfill-weeks",
                str(config.backfill_weeks),
                "--backfill-past-end",
                f"{past_end:g}",
                "--orders-per-day",
                f"{config.rate * 86400:g}",
                *world,
                "--end",
                history_end.isoformat(),
            ],
        ),
        Step(
            "batch",
            "batch features → Redis and the Parquet offline store",
            [
                *ETA,
                "features",
                "batch",
                "--history",
                str(history),
                "--as-of",
                batch_as_of.isoformat(),
                "--out",
                str(d / "offline_store"),
            ],
        ),
        Step(
            "training-set",
            "point-in-time training set (each order's features as the stream saw them)",
            [
                *ETA,
                "features",
                "training-set",
                "--history",
                str(history),
                "--out",
                str(training),
                "--since",
                rows_since.isoformat(),
                "--until",
                rows_until.isoformat(),
            ],
        ),
        Step(
            "train-v1",
            "train model v1 (l1, huber or l2 and tree settings, chosen by MAE), register it, "
            "promote it to production",
            # --force: a short history at a quiet hour can leave the model behind the global
            # median on validation; the demo shows the system either way (train says so)
            [*ETA, *train, "--promote", "production", "--force"],
        ),
        Step(
            "train-v2",
            "train model v2 (l1), register it as staging: promoted midway",
            [*ETA, *train, "--objective", "l1", "--promote", "staging", "--force"],
        ),
    ]


def live_traffic(config: DemoConfig) -> list[str]:
    """``eta produce simulate``: the warm-up burst, then live orders at ``rate`` per second.

    >>> live_traffic(DemoConfig(live_s=60, warmup_s=600))[-2:]
    ['--shock', 'm1:dasher_shortage:630:0.3']
    """
    argv = [
        *ETA,
        "produce",
        "simulate",
        "--rate",
        f"{config.rate:g}",
        "--duration",
        f"{config.live_s:g}",
        "--warmup",
        f"{config.warmup_s:g}",
        "--stores",
        str(config.stores),
        "--markets",
        str(config.markets),
        "--seed",
        str(config.seed),
        *_sim_args(config),
    ]
    if config.shock:
        half = int(config.warmup_s + config.live_s / 2)
        argv += ["--shock", config.shock.format(half=half)]
    return argv


def _sim_args(config: DemoConfig) -> list[str]:
    """The marketplace's options shared by the history and the live traffic."""
    return [*(["--steady"] if config.steady else []), "--burn-in", str(config.burn_in_s)]


def history_end(now: datetime, config: DemoConfig) -> datetime:
    """Where the history stops: the start of the live warm-up, to the minute."""
    return (now - timedelta(seconds=config.warmup_s)).replace(second=0, microsecond=0)
