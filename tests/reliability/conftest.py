"""Fixtures of the fault suite, and its summary table at the end of the session.

Every scenario runs ``eta predict stream`` as real worker processes on a broker and a Redis of
its own, with one small real model registered once per session. Each test fills in its ``row``
(events sent, predictions read back, lost, duplicated); the rows are printed after the session
and, when every scenario of the suite ran, saved as ``reliability.json`` in pytest's temporary
directory, or in the directory ``--save-results`` names (``--save-results bench/results``
updates the figures the README's table is generated from).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import orjson
import pytest

from stream_features.kafka_clients import ensure_topics
from stream_features.local_cluster import LocalCluster, redis_cluster
from stream_features.settings import Settings
from tests.integration.worker_helpers import WorkerProcess
from tests.integration.worker_models import registered_model
from tests.reliability.services import FaultStack, Spawn, fault_stack
from tests.reliability.tally import Row, format_table, save_results

HERE = Path(__file__).parent
RESULTS_NAME = "reliability.json"
SCENARIOS = {p.stem.removeprefix("test_") for p in HERE.glob("test_*.py")}
"""One scenario per module, its test named after it: the table is saved when all of them ran."""
_ROWS = pytest.StashKey[list[Row]]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_TEMP = pytest.StashKey[Path]()


def results_path(save_results: Path | None, temp: Path) -> Path:
    """Where the table goes: ``--save-results DIR`` if given, else pytest's temporary directory
    (never the checkout by default).

    >>> results_path(None, Path("/tmp/pytest-1")), results_path(Path("bench/results"), Path("/t"))
    (PosixPath('/tmp/pytest-1/reliability.json'), PosixPath('bench/results/reliability.json'))
    """
    return (save_results or temp) / RESULTS_NAME


@pytest.fixture(scope="session")
def model_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A registry with one small trained model at ``production``, shared by every scenario
    (the stage lives in the registry's files, so a fresh Redis serves it too)."""
    workdir = tmp_path_factory.mktemp("reliability-model")
    return registered_model(Settings(registry_dir=workdir / "models"), workdir)


@pytest.fixture()
def faults(tmp_path: Path) -> Iterator[FaultStack]:
    """A broker and a Redis of this scenario's own."""
    with fault_stack(tmp_path / "stack") as stack:
        yield stack


@pytest.fixture()
def served(faults: FaultStack, model_settings: Settings) -> Settings:
    """Settings of a worker on the scenario's stack, serving the session's model."""
    settings = faults.settings(
        registry_dir=model_settings.registry_dir,
        model_name=model_settings.model_name,
        metrics_port=0,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture()
def scenario_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A real 3-master Redis Cluster of this scenario's own (a node may be killed)."""
    with redis_cluster(tmp_path / "cluster") as started:
        yield started


@pytest.fixture()
def served_on_cluster(served: Settings, scenario_cluster: LocalCluster) -> Settings:
    """``served`` with the workers' Redis on the scenario's cluster."""
    return served.model_copy(update={"redis_url": scenario_cluster.url})


@pytest.fixture()
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``eta predict stream`` processes (log in ``<name>.log``); any still running when
    the test ends, failed or not, is killed."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, name: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{name}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop(signal.SIGKILL)


@pytest.fixture()
def row(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Generator[Row, None, None]:
    """This scenario's summary row; its time and outcome are filled in at teardown."""
    request.config.stash[_TEMP] = tmp_path_factory.getbasetemp()
    name = request.node.name.removeprefix("test_")
    assert name in SCENARIOS, f"test_{name} is not in a module of its own name"
    line = Row(name)
    started = time.monotonic()
    yield line
    line.seconds = round(time.monotonic() - started, 1)
    report = request.node.stash.get(_REPORTS, {}).get("call")
    line.outcome = report.outcome if report is not None else "error"
    request.config.stash.setdefault(_ROWS, []).append(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    terminalreporter.section("fault suite (tests/reliability)")
    terminalreporter.write_line(format_table(rows))
    for r in rows:
        if r.notes:
            terminalreporter.write_line(f"{r.scenario}: {orjson.dumps(r.notes).decode()}")
    if {r.scenario for r in rows} >= SCENARIOS:
        total_s = sum(r.seconds for r in rows)
        path = results_path(config.getoption("save_results"), config.stash[_TEMP])
        save_results(rows, path, total_s)
        terminalreporter.write_line(f"saved to {path} ({total_s:.0f} s in all)")
    else:
        terminalreporter.write_line("some scenarios did not run: results not saved")
