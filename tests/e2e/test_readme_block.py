"""The README's example block, run top to bottom as a user would, each exit code checked.

The block is read from README.md itself, so the test follows it: each line's ``eta`` command
runs as its own process, in order, on a stack of its own that the block's ``eta up`` starts.
Shortened, nothing else changed: less history, a short live run, fewer boosting rounds
(``SHORTER``). The long-running commands (``eta up``, ``eta predict stream``, ``eta serve``,
``eta monitor``) start in the background, as a user runs them in shells of their own, are
waited on until they have done their part, and stop with SIGTERM, which must exit 0.
``eta demo`` runs its own stack for minutes and has its own test (``test_demo.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).parents[2] / "README.md"
ETA = [sys.executable, "-c", "from predictor.cli import main; main()"]
SHORTER = {  # README text → the shortened run's
    "--days 7": "--days 0.3",
    "--speed 3600": "--speed max",
    "--duration 60": "--duration 3",
    "--rate 50": "--rate 20",
    "dasher_shortage:30:": "dasher_shortage:1:",
    "--training-set training_set.parquet": "--training-set training_set.parquet --max-rounds 40",
}
SKIPPED = ("eta demo",)  # its own stack for minutes: tests/e2e/test_demo.py
BACKGROUND = ("eta up", "eta predict stream", "eta serve", "eta monitor")


def readme_commands() -> list[str]:
    """The block's commands, comments and continuation lines dropped."""
    block = re.search(r"```bash\n(eta demo --out .*?)```", README.read_text(), flags=re.DOTALL)
    assert block, "README's example block (starting with eta demo --out) is gone"
    lines = [line.split("#", 1)[0].strip() for line in block[1].splitlines()]
    return [line for line in lines if line]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(
    what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert proc.poll() is None, f"{what}: the process exited {proc.returncode}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)


def test_the_readme_block_runs_top_to_bottom(tmp_path: Path) -> None:
    commands = readme_commands()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
    env.update(
        ETA_DATA_DIR=str(tmp_path / ".eta"),
        ETA_REGISTRY_DIR=str(tmp_path / "models"),
        ETA_METRICS_PORT=str(_free_port()),
        ETA_MONITOR_METRICS_PORT=str(_free_port()),
        ETA_HTTP_PORT=str(_free_port()),
        ETA_MONITOR_PUBLISH_S="1",
        ETA_MONITOR_RETRAIN_MIN_ROWS="500",
        ETA_SCORING="lightgbm",  # the one compile is the block's own `eta models compile`
        COLUMNS="200",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    background: dict[str, subprocess.Popen[bytes]] = {}
    ran: list[str] = []
    files: list[BinaryIO] = []

    def start(line: str, argv: list[str], extra: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (logs / f"{len(ran):02d}.log").open("wb")
        files.append(log)
        return subprocess.Popen(
            [*ETA, *argv[1:]], cwd=tmp_path, env={**env, **extra}, stdout=log, stderr=log
        )

    def log_of(i: int) -> str:
        return (logs / f"{i:02d}.log").read_text(errors="replace")

    try:
        for line in commands:
            if line.startswith(SKIPPED):
                continue
            for old, new in SHORTER.items():
                line = line.replace(old, new)
            words = shlex.split(line)
            extra = dict(w.split("=", 1) for w in words if re.match(r"^ETA_\w+=", w))
            argv = [w for w in words if not re.match(r"^ETA_\w+=", w)]
            assert argv[0] == "eta", line
            name = " ".join(argv[:3] if argv[1] in ("predict", "produce", "models") else argv[:2])
            proc = start(line, argv, extra)
            i = len(ran)
            ran.append(line)
            if argv[1] == "up":
                background[name] = proc
                _wait("eta up", lambda i=i: "export ETA_REDIS_URL" in log_of(i), proc, 60)
                for key, value in re.findall(r"^export (ETA_\w+)=(\S+)$", log_of(i), re.M):
                    env[key] = value
            elif any(" ".join(argv).startswith(b) for b in BACKGROUND):
                background[name] = proc
                if argv[1] == "serve":
                    url = f"http://127.0.0.1:{env['ETA_HTTP_PORT']}/healthz"
                    _wait("eta serve", lambda url=url: _ok(url), proc, 60)
            else:
                code = proc.wait(120)
                assert code == 0, f"{line!r} exited {code}:\n{log_of(i)[-3000:]}"
            if argv[1] == "monitor":  # the pairs eta retrain trains on
                _wait("eta monitor", lambda: _joined(tmp_path / ".eta") >= 500, proc, 60)
            if argv[1:3] == ["models", "list"]:
                listing = log_of(i)
                assert "huber" in listing and "l1" in listing, listing
        for name, proc in reversed(background.items()):  # Ctrl-C in each shell: clean stops
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, f"{name} did not stop cleanly"
    finally:
        for proc in reversed(background.values()):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for log in files:
            log.close()
    assert ran[-1].startswith("eta retrain"), ran


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _joined(data_dir: Path) -> int:
    from predictor.monitoring.recording import read_joined

    try:
        return int(read_joined(data_dir / "monitor").height)
    except Exception:  # not written yet
        return 0
