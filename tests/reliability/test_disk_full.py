"""A full disk under ``eta predict batch`` and ``eta report``: the output directory is on a
small tmpfs of the scenario's own, filled to the last byte after a first good run.

What the commands promise: each exits non-zero with one line naming the path it could not
write, not a traceback; the previous run's Parquet and the previous report stay whole (every
file is written to a temporary sibling and moved into place); Redis's batch predictions are
swapped only after the Parquet write succeeded, so Redis still serves the previous run.
The tmpfs needs root (or CAP_SYS_ADMIN): elsewhere the scenario is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from predictor.batch_scoring import BatchPredictionStore
from stream_features.event_log import write_log
from stream_features.settings import Settings
from tests.integration.worker_helpers import live_orders
from tests.reliability.services import FaultStack
from tests.reliability.tally import Row, tally

pytestmark = [pytest.mark.integration]

STORES, SLOTS = 200, 6
SIZE = "2m"


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted for this test, unmounted after it."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {SIZE} tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> None:
    """Write until the filesystem refuses (ENOSPC): it is then full to the last block."""
    with contextlib.suppress(OSError), (disk / "filler").open("wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def _eta(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
    env.update(
        ETA_REDIS_URL=settings.redis_url_value() or "",
        ETA_REGISTRY_DIR=str(settings.registry_dir),
        ETA_MODEL_NAME=settings.model_name,
        ETA_DATA_DIR=str(settings.data_dir),
        ETA_BATCH_OUT_DIR=str(settings.batch_out_dir),
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-c", "from predictor.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _failed_cleanly(done: subprocess.CompletedProcess[str], path: Path) -> str:
    """The one-line error of a failed command; asserts it names ``path`` and has no
    traceback."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    flat = "".join(output.split())  # rich and click wrap long lines
    assert str(path).replace(" ", "") in flat, output
    assert "Nospaceleftondevice" in flat, output
    flat_text = " ".join(output.split())
    return flat_text[max(flat_text.find("cannot write"), 0) :]


def test_disk_full(
    faults: FaultStack, model_settings: Settings, small_disk: Path, tmp_path: Path, row: Row
) -> None:
    out = small_disk / "batch"
    settings = faults.settings(
        registry_dir=model_settings.registry_dir,
        model_name=model_settings.model_name,
        batch_out_dir=out,
    )
    history = tmp_path / "history.jsonl"  # the input is not on the small disk
    orders = live_orders(STORES * 5, "h", stores=STORES)
    write_log(history, orders)
    batch = ("predict", "batch", "--history", str(history), "--slots", str(SLOTS))

    first = _eta(settings, *batch)
    assert first.returncode == 0, first.stdout + first.stderr
    version = (out / "CURRENT").read_text()
    before = pl.read_parquet(out / version / "predictions.parquet")
    assert before.height == STORES * SLOTS
    report = _eta(settings, "report", "--out", str(small_disk / "report"))
    assert report.returncode == 0, report.stdout + report.stderr
    page = (small_disk / "report" / "report.html").read_bytes()
    assert page

    _fill(small_disk)
    again = _eta(settings, *batch)
    row.notes["batch_error"] = _failed_cleanly(again, out)
    assert (out / "CURRENT").read_text() == version
    assert sorted(p.name for p in out.iterdir()) == sorted(["CURRENT", version]), (
        "a partial run left"
    )
    after = pl.read_parquet(out / version / "predictions.parquet")
    assert after.equals(before)
    client = faults.client()
    store = BatchPredictionStore(client)
    assert store.current() == version, "Redis swapped to a run whose Parquet was not written"
    in_redis = sum(store.read(f"s{i}")[1] is not None for i in range(STORES))
    assert in_redis == STORES
    client.close()

    report_again = _eta(settings, "report", "--out", str(small_disk / "report"))
    row.notes["report_error"] = _failed_cleanly(report_again, small_disk / "report")
    assert (small_disk / "report" / "report.html").read_bytes() == page
    assert sorted(p.name for p in (small_disk / "report").iterdir()) == ["report.html"]

    counted = tally(
        (str(i).encode() for i in before["order_id"]), (str(i).encode() for i in after["order_id"])
    )
    row.count(len(orders), counted)
    row.notes["stores_in_redis"] = in_redis
    row.notes["disk"] = SIZE
    assert counted.lost == 0 and counted.duplicated == 0
