"""The atheris target runs for a bounded time over the kept corpus and finds nothing.

New inputs go to a temporary directory, never into the repository's corpus; a crash would leave
``crash-*`` there and make libFuzzer exit non-zero, with the input in its output.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.samples import CORPUS, TOPICS, corpus_name, seeds

FUZZER = Path(__file__).with_name("fuzz_decode.py")
ROOT = Path(__file__).resolve().parents[2]
FUZZ_SECONDS = 15


def test_the_corpus_holds_every_seed_of_every_topic() -> None:
    for topic, datas in seeds().items():
        for data in datas:
            file = CORPUS / topic / corpus_name(data)
            assert file.is_file(), f"{file} is missing: run `python -m tests.fuzz.samples`"
            assert file.read_bytes() == data
    assert {p.name for p in CORPUS.iterdir()} == set(TOPICS)


@pytest.mark.slow
def test_the_fuzzer_runs_over_the_corpus_without_a_crash(tmp_path: Path) -> None:
    found = tmp_path / "found"
    found.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZER),
            f"-max_total_time={FUZZ_SECONDS}",
            "-max_len=8192",
            "-timeout=10",  # one input taking 10 s is a hang, reported as a crash
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={tmp_path}/",
            str(found),
            *(str(CORPUS / topic) for topic in TOPICS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
    )
    # atheris prints an uncaught exception's traceback on stdout and libFuzzer's account on
    # stderr: a report needs both, and the input that did it
    crashes = [f"{p.name}: {p.read_bytes()[:2000]!r}" for p in tmp_path.glob("crash-*")]
    report = "\n".join([proc.stdout[-6000:], proc.stderr[-2000:], *crashes])
    assert proc.returncode == 0, report
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*")), report
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", proc.stderr))
    assert int(stats["number_of_executed_units"]) > len(TOPICS), report
    print(f"fuzzed {stats['number_of_executed_units']} inputs, {stats['average_exec_per_sec']}/s")
