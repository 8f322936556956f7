"""The demo's child processes: steps that run to completion, and services that run until told.

Each writes its output to a log file of its own under the demo directory, so the terminal
keeps the dashboard and a failure can point at the one log that explains it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["DemoError", "Service", "log_tail", "run_step"]


class DemoError(RuntimeError):
    """A step or service failed; the message names it and quotes the end of its log."""


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log (empty when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_step(
    argv: Sequence[str], env: Mapping[str, str], log: Path, timeout_s: float = 600.0
) -> None:
    """Run one command to completion; ``DemoError`` with its log's end when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        try:
            code = subprocess.run(
                list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s
            ).returncode
        except subprocess.TimeoutExpired:
            raise DemoError(f"{log.stem} did not finish within {timeout_s:.0f} s") from None
    if code != 0:
        raise DemoError(f"{log.stem} exited {code}; the end of {log}:\n{log_tail(log)}")


class Service:
    """A long-running ``eta`` command (worker, API, monitor) in its own process group."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """``DemoError`` if the service has died."""
        if not self.alive():
            raise DemoError(
                f"the {self.name} exited {self.proc.returncode}; the end of {self.log}:\n"
                f"{log_tail(self.log)}"
            )

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (finish, flush, commit), then SIGKILL after ``timeout_s``; the exit code."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)  # polling the child's exit, bounded by the deadline
            if self.alive():
                os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        self._out.close()
        return code
