"""py-spy on etastream's worker while it drains the peer benchmark's backlog.

py-spy samples the running worker from outside (``--nonblocking``: the worker is never
paused), from the first prediction read to the last, so start-up and the group join are left
out. Only active samples are kept (py-spy's default: a thread waiting in a system call, on a
socket or a lock, is not active; one that is runnable but not scheduled is). Per thread: the
share of the drain it was active; per stage and function: the share of all active samples.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "PySpy", "summarise"]

STAGES: dict[str, str] = {
    "engine loop, main thread (step)": "step",
    "decode + validate (decode_batch)": "decode_batch",
    "features: apply to partition state + rows (start_update)": "start_update",
    "write-behind to Redis, building it (_write_behind)": "_write_behind",
    "score + encode (score_batch)": "score_batch",
    "model predict": "predict",
    "encode predictions": "answers",
    "produce (_produce)": "_produce",
    "acks and commits (_settle)": "_settle",
    "latest prediction per order to Redis (store_result)": "store_result",
}
"""Stage label -> the function whose inclusive samples measure it."""

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


class PySpy:
    """``py-spy record`` attached to ``pid`` until ``stop``; None of it when py-spy is absent."""

    def __init__(self, pid: int, out: Path, rate_hz: int = 100) -> None:
        self.out, self.rate_hz = out, rate_hz
        self.started = time.time()
        binary = shutil.which("py-spy")
        self._proc: subprocess.Popen[bytes] | None = None
        if binary is not None:
            cmd = [binary, "record", "--pid", str(pid), "--nonblocking", "--threads"]
            cmd += ["-r", str(rate_hz), "-f", "raw", "-o", str(out)]
            log = out.with_suffix(".log").open("wb")
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> dict[str, Any] | None:
        """Stop sampling; the summary, or None when py-spy did not run."""
        if self._proc is None:
            return None
        seconds = time.time() - self.started
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        if not self.out.exists():
            return {"error": f"py-spy wrote nothing; see {self.out.with_suffix('.log')}"}
        return summarise(self.out.read_text().splitlines(), seconds, self.rate_hz)


def _frame(text: str) -> str:
    """``func (path/file.py:12)`` -> ``file.py:func``.

    >>> _frame("decode_batch (predictor/serving/pipeline.py:123)")
    'pipeline.py:decode_batch'
    """
    match = _FRAME.match(text)
    if match is None:
        return text
    return f"{Path(match['file']).name}:{match['func']}"


def summarise(lines: Iterable[str], seconds: float, rate_hz: int, top: int = 12) -> dict[str, Any]:
    """Active share per thread; share of active samples per stage (inclusive) and function
    (own time).

    >>> s = summarise(["thread (1): MainThread;W.step (a.py:1);decode_batch (p.py:2) 30",
    ...                "thread (1): MainThread;W.step (a.py:1) 10"], seconds=1.0, rate_hz=100)
    >>> s["threads_active"], s["stages"]["engine loop, main thread (step)"], s["own_time"][0]
    ({'MainThread': 0.4}, 1.0, ('p.py:decode_batch', 0.75))
    """
    threads: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *frames = stack.split(";")
        thread = head.split(": ", 1)[-1] if head.startswith("thread") else head
        total += count
        threads[thread] += count
        if frames:
            own[_frame(frames[-1])] += count
        funcs = {_frame(f).rsplit(":", 1)[-1].rsplit(".", 1)[-1] for f in frames}
        for label, func in STAGES.items():
            if func in funcs:
                stages[label] += count
    per_thread = max(seconds * rate_hz, 1.0)
    share = max(total, 1)
    return {
        "seconds": round(seconds, 2),
        "rate_hz": rate_hz,
        "samples": total,
        "threads_active": {t: round(n / per_thread, 3) for t, n in threads.most_common()},
        "stages": {label: round(stages[label] / share, 3) for label in STAGES},
        "own_time": [(f, round(n / share, 3)) for f, n in own.most_common(top)],
    }
