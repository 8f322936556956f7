"""The peer benchmark's oracle and checker (bench/peers_check.py) on small hand-made cases.

The oracle decides which contender is right, so it is held to hand-computed counts, to a
brute-force reading of its definition, and to etastream's own in-memory reference
(``ReplayState``, which the Redis path is tested against elsewhere).
"""

from __future__ import annotations

import doctest
import importlib
import json
import random
import time
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stream_features.contract import to_ms
from stream_features.replay_state import ReplayState
from stream_features.settings import Settings
from tests.feature_events import T0, order
from tests.paths import ROOT

MIN = 60_000


RESULTS = ROOT / "bench" / "results" / "peers.json"


def _load(name: str) -> ModuleType:
    """A module of the bench package, ``bench.<name>``."""
    return importlib.import_module(f"bench.{name}")


pc = _load("peers_check")


def test_an_order_never_counts_itself_and_stores_are_apart() -> None:
    got = pc.expected_counts([("a", "s1", 0), ("b", "s2", 1), ("c", "s1", 2), ("d", "s2", 3)])
    assert got == {"a": 0, "b": 0, "c": 1, "d": 1}


def test_the_window_is_the_ten_buckets_ending_with_the_orders_own() -> None:
    orders = [
        ("a", "s", 0),  # bucket 0
        ("b", "s", 10 * MIN - 1),  # bucket 9: window 0..9 holds a
        ("c", "s", 10 * MIN),  # bucket 10: window 1..10, a has left
        ("d", "s", 10 * MIN),  # same instant, read after c: c counts
        ("e", "s", 20 * MIN - 1),  # bucket 19: window 10..19 holds c, d
        ("f", "s", 20 * MIN),  # bucket 20: window 11..20, only e is left
    ]
    assert pc.expected_counts(orders) == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 2, "f": 1}


def test_bucket_aligned_not_an_exact_ten_minutes() -> None:
    # 9 min 40 s apart, but 10 buckets apart: an exact [t - 10 min, t] would count a
    got = pc.expected_counts([("a", "s", 30_000), ("b", "s", 10 * MIN + 10_000)])
    assert got == {"a": 0, "b": 0}


def test_read_order_decides_not_event_time_within_the_window() -> None:
    orders = [
        ("late-stamp", "s", 5 * MIN + 50_000),  # read first, stamped later in bucket 5
        ("x", "s", 5 * MIN + 1_000),  # bucket 5: sees the earlier-read one
        ("next-bucket", "s", 7 * MIN),  # read before y but in a later bucket
        ("y", "s", 6 * MIN),  # bucket 6: window -3..6, next-bucket (7) is outside
    ]
    assert pc.expected_counts(orders) == {"late-stamp": 0, "x": 1, "next-bucket": 2, "y": 2}


def test_oracle_equals_brute_force_on_ordered_input() -> None:
    rng = random.Random(3)
    ts = sorted(rng.randrange(0, 90 * MIN) for _ in range(600))
    orders = [(f"o{i}", f"s{rng.randrange(7)}", t) for i, t in enumerate(ts)]
    got = pc.expected_counts(orders)
    for i, (oid, store, t) in enumerate(orders):
        lo = (t // MIN - 9) * MIN
        assert got[oid] == sum(1 for _, s2, t2 in orders[:i] if s2 == store and lo <= t2 <= t)


def test_oracle_equals_etastreams_reference_state() -> None:
    rng = random.Random(5)
    offsets = sorted(rng.uniform(0, 45 * 60) for _ in range(300))
    events = [
        order(f"o{i}", T0 + timedelta(seconds=s), store=f"s{rng.randrange(4)}")
        for i, s in enumerate(offsets)
    ]
    rows = ReplayState().update_and_read(events)
    column = rows.values[:, rows.names.index("store__orders_created__10m")]
    expected = pc.expected_counts((o.order_id, o.store_id, to_ms(o.created_at)) for o in events)
    assert [int(v) for v in column] == [expected[o.order_id] for o in events]


def test_own_window_is_the_earliest_hopping_window_holding_the_event() -> None:
    for ts in (0, 1, MIN - 1, MIN, 10 * MIN + 123, 1_767_225_600_000 + 59_999):
        start = pc.own_window_start_ms(ts)
        assert start <= ts < start + 10 * MIN  # it holds the event
        assert start + 10 * MIN == (ts // MIN + 1) * MIN  # and ends with the event's bucket
        assert start % MIN == 0


def test_checker_counts_missing_duplicated_wrong_and_unexpected() -> None:
    expected = {"a": 0, "b": 1, "c": 2, "d": 3}
    check = pc.check_outputs(expected, [("a", 0), ("b", 1), ("b", 1), ("c", 5), ("zz", 0)])
    assert (check.expected, check.received) == (4, 5)
    assert (check.wrong, check.missing, check.duplicated, check.unexpected) == (1, 1, 1, 1)
    assert check.examples == (("c", 2, 5),)
    assert not check.ok


def test_checker_a_wrong_copy_makes_the_order_wrong_once() -> None:
    check = pc.check_outputs({"a": 1}, [("a", 1), ("a", 2), ("a", 3)])
    assert (check.wrong, check.duplicated, check.missing) == (1, 2, 0)
    assert check.examples == (("a", 1, 2),)


def test_checker_all_right_is_ok_and_examples_are_bounded() -> None:
    expected = {f"o{i}": i % 3 for i in range(50)}
    assert pc.check_outputs(expected, expected.items()).ok
    bad = pc.check_outputs(expected, [(k, v + 1) for k, v in expected.items()], max_examples=3)
    assert bad.wrong == 50 and len(bad.examples) == 3 and not bad.ok
    assert pc.check_outputs(expected, []).missing == 50


def test_the_ceiling_row_is_a_reference_never_the_best_peer() -> None:
    report = _load("peers_report")
    rows = [
        {"tool": "etastream", "variant": "c", "orders_per_s": 300, "correct": True},
        {"tool": "quix", "variant": "apply", "orders_per_s": 100, "correct": True},
        {"tool": "ceiling", "variant": "dict", "orders_per_s": 350, "correct": True},
    ]
    got = report.speedup(rows)
    assert (got["best_correct_peer"], got["peer_orders_per_s"], got["ratio"]) == (
        "quix:apply",
        100,
        3.0,
    )
    assert (got["ceiling_orders_per_s"], got["target_orders_per_s"]) == (350, 100)
    assert report.speedup(rows[::2]) is None  # etastream and the ceiling alone: no peer
    run = {"label": "x", "peak_rss_mb": 1, "cpu_s": {}, "wrong": 0, "missing": 0}
    run |= {"duplicated": 0, "unexpected": 0, "loadavg_before": [0.0], "loadavg_after": [0.0]}
    runs = [run | r for r in rows]
    block = report.readme_block(
        {
            "runs": runs,
            "rows": runs,
            "speedup_vs_best_correct_peer": got,
            "machine": {"cpus": 2, "cpu": "X", "memory_gib": 8, "python": "3.11"},
            "versions": {},
        }
    )
    assert "| ceiling (reference) | x | 350 |" in block and "| quix * |" in block
    assert "needs 100 orders/s (1× quix:apply)" in block and "did 350 orders/s" in block


def test_the_ceiling_counts_as_the_oracle_on_shuffled_input() -> None:
    """Its dict and its cached window sum against the oracle, out-of-order records included."""
    counts_cls = _load("peers_ceiling").StoreCounts
    rng = random.Random(11)
    for shuffled in (False, True):
        ts = [rng.randrange(0, 40 * MIN) for _ in range(800)]
        if not shuffled:
            ts.sort()
        orders = [(f"o{i}", f"s{rng.randrange(6)}", t) for i, t in enumerate(ts)]
        counts = counts_cls()
        got = {o: counts.count_then_add(s.encode(), t // MIN) for o, s, t in orders}
        assert got == pc.expected_counts(orders)


def test_bytewax_answers_as_the_oracle() -> None:
    """Its dataflow (Kafka in and out replaced by Bytewax's testing source and sink)."""
    pytest.importorskip("bytewax", reason="pip install -e '.[bench]'")
    from bytewax import operators as op
    from bytewax.connectors.kafka import KafkaSourceMessage
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    bw = _load("peers_bytewax")
    failed, tried = doctest.testmod(pc)  # count_then_add, which every peer's worker calls
    assert tried > 0 and failed == 0
    rng = random.Random(5)
    ts = sorted(rng.randrange(0, 40 * MIN) for _ in range(800))
    orders = [(f"o{i}", f"s{rng.randrange(6)}", t) for i, t in enumerate(ts)]
    flow = Dataflow("bytewax-oracle")
    records = [
        KafkaSourceMessage(s.encode(), json.dumps({"order_id": o}).encode(), timestamp=(1, t))
        for o, s, t in orders
    ]
    got: list[Any] = []
    answers = bw.answers(op.input("orders", flow, TestingSource(records, batch_size=50)))
    op.output("answers", answers, TestingSink(got))
    run_main(flow)
    counts = {a["order_id"]: a["count"] for a in (json.loads(m.value) for m in got)}
    assert len(got) == len(orders) and counts == pc.expected_counts(orders)
    assert {m.key for m in got} == {s.encode() for _, s, _ in orders}  # keyed by store


def _peers() -> ModuleType:
    return _load("peers")


def test_contenders_run_in_the_order_given() -> None:
    peers = _peers()
    names = [c.name for c in peers._selected("quix:apply, faust,quix")]
    faust = ["faust:table", "faust:hopping", "faust:hopping-expires"]
    assert names == ["quix:apply", *faust, "quix:window"]  # each once
    with pytest.raises(SystemExit, match="nope"):
        peers._selected("quix,nope")


class _Msg:
    def __init__(self, order_id: str) -> None:
        self._value = json.dumps({"order_id": order_id, "count": 0, "at_ms": 1}).encode()

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


class _Reader:
    """Answers that arrive a few per poll, as from a worker that exited before they were read."""

    def __init__(self, order_ids: list[str]) -> None:
        self._left = [_Msg(o) for o in order_ids]

    def consume(self, n: int, timeout: float) -> list[_Msg]:
        time.sleep(0.005)
        batch, self._left = self._left[:3], self._left[3:]
        return batch


def _read(run: ModuleType, order_ids: list[str], expected: int) -> Any:
    """``read_outputs`` of a worker that has already exited (``alive`` is always False)."""
    reader = _Reader(order_ids)
    return run.read_outputs(reader, expected, run._parse_peer, lambda: False, lambda: None, 30)


def test_a_worker_that_exited_is_read_to_its_last_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    _peers()
    run = _load("peers_run")
    monkeypatch.setattr(run, "EXITED_QUIET_S", 0.2)
    done = _read(run, [f"o{i}" for i in range(30)], expected=30)
    assert len(done.outputs) == 30 and done.stalled is None
    short = _read(run, [f"o{i}" for i in range(20)], expected=30)
    assert len(short.outputs) == 20 and short.stalled == "the worker exited"


def test_readme_peer_table_is_the_last_saved_run() -> None:
    """README's table is rendered from bench/results/peers.json (bench/peers.py writes both)."""
    result = json.loads((ROOT / "bench" / "results" / "peers.json").read_text())
    block = _load("peers_report").readme_block(result)
    assert block in (ROOT / "README.md").read_text(), "rerun python -m bench.peers"
    assert (
        "| etastream" in block and "| quix" in block and "| bytewax" in block
    )  # the run kept has the durable peers and Bytewax


def test_doctests_of_the_pure_bench_modules() -> None:
    """bench/ is outside pytest's doctest paths: run its pure modules' examples here."""
    for name in ("peers_check", "peers_report", "peers_profile", "peers_ceiling", "peers_group"):
        failed, tried = doctest.testmod(_load(name))
        assert tried > 0 and failed == 0, name


def test_two_processes_are_a_contender_of_their_own_in_the_order_given() -> None:
    peers = _peers()
    assert [c.name for c in peers._selected("etastream")] == [
        "etastream:confluent",
        "etastream:confluent-x2",
        "etastream:confluent-cluster",
    ]
    (x2,) = peers._selected("etastream:confluent-x2")
    assert (x2.processes, x2.script) == (2, None)
    (on_cluster,) = peers._selected("etastream:confluent-cluster")
    assert (on_cluster.processes, on_cluster.redis) == (1, "cluster")


def _run(tool: str, variant: str, per_s: int, **more: Any) -> dict[str, Any]:
    run = {"tool": tool, "variant": variant, "label": variant, "orders_per_s": per_s}
    run |= {"correct": True, "wrong": 0, "missing": 0, "duplicated": 0, "unexpected": 0}
    run |= {"peak_rss_mb": 100, "cpu_s": {"worker": 1.0}}
    return run | {"loadavg_before": [1.0], "loadavg_after": [2.0]} | more


def test_two_processes_are_shown_never_etastreams_row() -> None:
    report = _load("peers_report")
    x2 = _run("etastream", "confluent-x2", 500, processes=2, peak_rss_mb=201)
    x2["peak_rss_mb_each"] = [100, 101]
    runs = [_run("etastream", "confluent", 300), x2, _run("quix", "apply", 100)]
    rows = report.choose_rows(runs)
    assert [(r["tool"], r["variant"]) for r in rows] == [
        ("etastream", "confluent"),
        ("quix", "apply"),
    ]
    assert report.speedup(rows)["etastream_orders_per_s"] == 300  # one process against one
    result = {
        "runs": runs,
        "rows": rows,
        "speedup_vs_best_correct_peer": report.speedup(rows),
        "machine": {"cpus": 2, "cpu": "X", "memory_gib": 8, "python": "3.11"},
        "versions": {},
    }
    block = report.readme_block(result)
    assert "| etastream * | confluent | 300 | right | 100 |" in block
    assert "| etastream | confluent-x2 | 500 | right | 100 + 101 |" in block
    assert "(2 processes, one consumer group): 500 orders/s, right; 1.7× etastream:confluent" in (
        block
    )
    alone = report.choose_rows([x2])  # a partial run of the two processes alone
    assert alone == [] and report.speedup(alone) is None
    assert "500 orders/s, right." in report.readme_block(result | {"runs": [x2], "rows": []})


def test_etastream_on_a_cluster_is_never_its_row_even_when_faster() -> None:
    report = _load("peers_report")
    single = _run("etastream", "confluent", 300, correct=True)
    cluster = _run("etastream", "confluent-cluster", 400, correct=True, redis="cluster")
    assert report.choose_rows([single, cluster]) == [single]


def test_a_partial_run_on_the_same_input_keeps_the_other_runs(tmp_path: Path) -> None:
    peers = _peers()
    report = _load("peers_report")
    described = {"orders": 20_000, "event_time_from": "2026-11-25T08:30:00Z"}
    old = [_run("etastream", "confluent", 300), _run("quix", "apply", 100)]
    saved = {"at": "2026-11-25T12:00:00+00:00", "versions": {"etastream_commit": "abc"}}
    out = tmp_path / "peers.json"
    out.write_text(json.dumps(saved | {"input": described, "runs": old}))
    earlier = peers._earlier_runs(out, described, fresh=False)
    assert [r["session"]["etastream_commit"] for r in earlier] == ["abc", "abc"]
    new = {"at": "2026-12-02T01:00:00+00:00", "etastream_commit": "def"}
    x2 = _run("etastream", "confluent-x2", 500, processes=2, session=new)
    runs, kept = report.merge_runs(earlier, [x2])
    assert [r["variant"] for r in runs] == ["confluent", "apply", "confluent-x2"]
    assert [r["variant"] for r in kept] == ["confluent", "apply"]
    rows = report.choose_rows(runs)
    block = report.readme_block(
        {
            "runs": runs,
            "rows": rows,
            "speedup_vs_best_correct_peer": report.speedup(rows),
            "machine": {"cpus": 2, "cpu": "X", "memory_gib": 8, "python": "3.11"},
            "versions": {},
        }
    )
    assert "| etastream * | confluent | 300 |" in block and "| quix * | apply | 100 |" in block
    assert "abc at 2026-11-25 12:00 UTC (etastream:confluent, quix:apply)" in block
    assert "def at 2026-12-02 01:00 UTC (etastream:confluent-x2)" in block
    assert peers._earlier_runs(out, described | {"orders": 5}, fresh=False) == []  # another input
    assert peers._earlier_runs(out, described, fresh=True) == []


def test_the_group_settles_on_each_workers_latest_assignment(tmp_path: Path) -> None:
    group = _load("peers_group")
    one, two = tmp_path / "1.log", tmp_path / "2.log"
    one.write_text('{"msg": "partitions assigned", "partitions": ["orders[0]"]}\n')  # kept log
    logs = [group.log_from_end(one), group.log_from_end(two)]

    def say(path: Path, msg: str, *parts: int) -> None:
        names = [f"orders[{p}]" for p in parts] + [f"deliveries[{p}]" for p in parts]
        with path.open("a") as f:
            f.write(json.dumps({"msg": msg, "partitions": names}) + "\nplain text line\n")

    assert not group.settled(group.read_holdings(logs, "orders"), 4)  # this run: nothing yet
    say(one, "partitions assigned", 0, 1, 2, 3)  # the first member alone holds all
    say(two, "partitions assigned", 2, 3)  # the second in, the first not yet revoked
    assert not group.settled(group.read_holdings(logs, "orders"), 4)
    say(one, "partitions revoked", 0, 1, 2, 3)
    say(one, "partitions assigned", 0, 1)
    held = group.read_holdings(logs, "orders")
    assert group.settled(held, 4)
    assert [sorted(h.partitions) for h in held] == [[0, 1], [2, 3]]
    assert [h.assignments for h in held] == [2, 1]
    assert group.wait_settled(logs, "orders", 4, 1.0, lambda: True) == held
    assert group.wait_settled(logs, "orders", 5, 0.2, lambda: True) is None


class _Cpu:
    def between(self, t0: float, t1: float) -> dict[str, float]:
        cores = {"worker 1": 0.5, "worker 2": 0.75, "broker (Tansu)": 0.25}
        return cores | {"total": 1.5, "window_s": 2.0}


class _Worker:
    def __init__(self, rss_mb: int) -> None:
        self.rss_max = rss_mb * 2**20


def test_a_row_of_two_workers_sums_their_cpu_and_keeps_each() -> None:
    _peers()
    run, check = _load("peers_run"), _load("peers_input")
    (x2,) = [c for c in run.CONTENDERS if c.processes == 2]
    data = check.BenchInput([b"s"] * 2, [b"{}"] * 2, [0, 1], {"a": 0, "b": 1}, 1, 1)
    got = run.Reading(outputs=[("a", 0), ("b", 1)], first_stamp_ms=1_000.0)
    got.first_read_s, got.last_new_read_s = 1.5, 3.0
    row = run._row(x2, data, got, _Cpu(), [_Worker(100), _Worker(120)], [0, 0], [4.0, 5.5], 0, 1)
    assert row["cpu_cores"]["worker"] == 1.25 and row["cpu_cores"]["total"] == 1.5
    assert row["cpu_s"] == {"worker": 2.5, "worker 1": 1.0, "worker 2": 1.5, "broker (Tansu)": 0.5}
    assert (row["peak_rss_mb"], row["peak_rss_mb_each"]) == (220, [100, 120])
    assert row["worker_cpu_s_from_launch"] == 9.5 and row["exit_code"] == 0
    assert (row["processes"], row["orders_per_s"], row["correct"]) == (2, 1, True)


def test_the_workers_environment_reads_back_as_the_same_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tuple setting (the bench's ``stream_feature_names``) goes over as JSON."""
    stream = _load("stream")
    settings = Settings(
        stream_include_features=True,
        stream_feature_names=("store__orders_created__10m",),
        registry_dir=Path("/tmp/models"),
        metrics_port=0,
    )
    env = stream._env(settings)
    assert env["ETA_STREAM_FEATURE_NAMES"] == '["store__orders_created__10m"]'
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    back = Settings()
    assert back.stream_feature_names == settings.stream_feature_names
    assert (back.registry_dir, back.metrics_port) == (Path("/tmp/models"), 0)


def test_a_run_of_the_two_processes_alone_keeps_the_saved_table() -> None:
    """Merged into bench/results/peers.json, a new run adds its row and a line or two under
    the table; the saved rows are rendered as before."""
    peers, report = _peers(), _load("peers_report")
    saved = json.loads((ROOT / "bench" / "results" / "peers.json").read_text())
    session = {"at": "2026-12-02T01:00:00+00:00", "etastream_commit": "def"}
    x2 = _run("etastream", "confluent-x2", 20_000, processes=2, session=session)
    runs, kept = report.merge_runs(peers._earlier_runs(RESULTS, saved["input"], False), [x2])
    others = [
        r for r in saved["runs"] if (r["tool"], r["variant"]) != ("etastream", "confluent-x2")
    ]
    assert len(kept) == len(others) and sum(r is x2 for r in runs) == 1  # x2 replaced
    rows = report.choose_rows(runs)
    names = [(r["tool"], r["variant"]) for r in rows]
    assert [n for n in names if n != ("etastream", "confluent-x2")] == [
        (r["tool"], r["variant"]) for r in saved["rows"] if r["variant"] != "confluent-x2"
    ]
    result = saved | {"runs": runs, "rows": rows, "speedup_vs_best_correct_peer": None}
    result["speedup_vs_best_correct_peer"] = report.speedup(rows)
    assert result["speedup_vs_best_correct_peer"] == saved["speedup_vs_best_correct_peer"]
    before, after = report.readme_block(saved), report.readme_block(result)
    table = [
        line
        for line in before.splitlines()
        if line.startswith("| ") and "two processes" not in line
    ]
    assert all(line in after.splitlines() for line in table)
    assert "| etastream | confluent-x2 | 20,000 | right | 100 |" in after


def test_a_kept_workdir_starts_each_contender_from_nothing(tmp_path: Path) -> None:
    """A second run into the same ``--keep`` directory once restored the first run's Redis AOF
    and answered wrong on nearly every order: the contender's stack and state go first."""
    run = _load("peers_run")
    (eta,) = [c for c in run.CONTENDERS if c.tool == "etastream" and c.variant == "confluent"]
    first = run.cleared_stack_dir(eta, tmp_path)
    (first / "redis").mkdir(parents=True)
    (first / "redis" / "appendonly.aof").write_text("the last run's counts")
    (tmp_path / f"state-{eta.tool}-{eta.variant}").mkdir()
    again = run.cleared_stack_dir(eta, tmp_path)
    assert again == first and not again.exists()
    assert not (tmp_path / f"state-{eta.tool}-{eta.variant}").exists()
