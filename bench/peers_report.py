"""The peer benchmark's verdicts and tables: a tool's row is its fastest correct variant.

The ``ceiling`` row (``bench/peers_ceiling.py``) is a reference, never a peer: it sets what
any Python worker can do through this broker on this machine, next to the target. A run of
several processes (``etastream:confluent-x2``) is shown, never a tool's row (every peer runs
one process): the line under the table sets it against the tool's one-process run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = [
    "README_END",
    "README_START",
    "REFERENCE",
    "TARGET",
    "ceiling",
    "choose_rows",
    "merge_runs",
    "print_profile",
    "print_table",
    "processes",
    "readme_block",
    "scaling",
    "speedup",
    "verdict",
]

TARGET = 1.0
"""etastream's orders/s over the best correct peer's it must reach (issue #16: at least every
correct peer that keeps durable state, and the aim is every correct peer; issue #10 had 4x)."""
README_START, README_END = "<!-- peers-table:start -->", "<!-- peers-table:end -->"
REFERENCE = "ceiling"  # the tool of the reference row: shown, never counted as a peer


def processes(r: dict[str, Any]) -> int:
    """The run's worker processes (runs saved before the field were one)."""
    return int(r.get("processes") or 1)


def choose_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tool, in first-seen order: its fastest correct one-process run, else its fastest
    one-process run; a tool with only runs of several processes has no row, and neither has
    etastream on a Redis Cluster (a row of its own, beside the one on a single Redis).

    >>> runs = [{"tool": "q", "variant": "a", "orders_per_s": 9, "correct": False},
    ...         {"tool": "q", "variant": "b", "orders_per_s": 5, "correct": True},
    ...         {"tool": "q", "variant": "x2", "orders_per_s": 8, "correct": True,
    ...          "processes": 2}]
    >>> [r["variant"] for r in choose_rows(runs)]
    ['b']
    """
    single = [r for r in runs if processes(r) == 1 and r.get("redis", "single") == "single"]
    tools = list(dict.fromkeys(r["tool"] for r in single))
    rows = []
    for tool in tools:
        mine = [r for r in single if r["tool"] == tool]
        ranked = sorted(mine, key=lambda r: (bool(r["correct"]), r["orders_per_s"] or 0))
        rows.append(ranked[-1])
    return rows


def _best_peer(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    peers = [
        r
        for r in rows
        if r["tool"] not in ("etastream", REFERENCE) and r["correct"] and r["orders_per_s"]
    ]
    return max(peers, key=lambda r: r["orders_per_s"]) if peers else None


def ceiling(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The reference row next to the target: the orders/s etastream needs (``TARGET`` times
    the best correct peer's) and the orders/s of the ceiling, when both exist.

    >>> ceiling([{"tool": "ceiling", "variant": "d", "orders_per_s": 90, "correct": True},
    ...          {"tool": "quix", "variant": "a", "orders_per_s": 30, "correct": True}])
    {'ceiling_orders_per_s': 90, 'ceiling_correct': True, 'best_correct_peer': 'quix:a', \
'target_orders_per_s': 30}
    """
    ref = next((r for r in rows if r["tool"] == REFERENCE), None)
    best = _best_peer(rows)
    if ref is None or best is None or not ref["orders_per_s"]:
        return None
    return {
        "ceiling_orders_per_s": ref["orders_per_s"],
        "ceiling_correct": bool(ref["correct"]),
        "best_correct_peer": f"{best['tool']}:{best['variant']}",
        "target_orders_per_s": round(TARGET * best["orders_per_s"]),
    }


def speedup(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """etastream's orders/s over the best correct peer's, when both exist; the ceiling's row
    is no peer, its figures ride along (``ceiling``).

    >>> rows = [{"tool": "etastream", "variant": "c", "orders_per_s": 800, "correct": True},
    ...         {"tool": "quix", "variant": "a", "orders_per_s": 100, "correct": True}]
    >>> speedup(rows)["ratio"]
    8.0
    >>> ref = {"tool": "ceiling", "variant": "d", "orders_per_s": 1000, "correct": True}
    >>> got = speedup(rows + [ref])
    >>> got["best_correct_peer"], got["ratio"], got["ceiling_orders_per_s"]
    ('quix:a', 8.0, 1000)
    """
    eta = next((r for r in rows if r["tool"] == "etastream"), None)
    best = _best_peer(rows)
    if eta is None or best is None or not eta["orders_per_s"]:
        return None
    ratio = round(eta["orders_per_s"] / best["orders_per_s"], 1)
    return {
        "etastream_orders_per_s": eta["orders_per_s"],
        "etastream_correct": eta["correct"],
        "best_correct_peer": f"{best['tool']}:{best['variant']}",
        "peer_orders_per_s": best["orders_per_s"],
        "ratio": ratio,
        "target": TARGET,
        "met": bool(eta["correct"] and ratio >= TARGET),
    } | (ceiling(rows) or {})


def scaling(runs: list[dict[str, Any]]) -> list[str]:
    """A sentence per run of several processes: its orders/s against its tool's fastest
    correct one-process run's (``choose_rows``).

    >>> runs = [{"tool": "e", "variant": "c", "orders_per_s": 10_000, "correct": True},
    ...         {"tool": "e", "variant": "c-x2", "orders_per_s": 15_000, "correct": True,
    ...          "processes": 2}]
    >>> scaling(runs)
    ['e:c-x2 (2 processes, one consumer group): 15,000 orders/s, right; 1.5× e:c (10,000).']
    """
    rows = {r["tool"]: r for r in choose_rows(runs)}
    out = []
    for r in runs:
        if processes(r) == 1:
            continue
        head = (
            f"{r['tool']}:{r['variant']} ({processes(r)} processes, one consumer group): "
            f"{r['orders_per_s'] or 0:,} orders/s, {verdict(r)}"
        )
        one = rows.get(r["tool"])
        if one and one["orders_per_s"] and r["orders_per_s"]:
            ratio = r["orders_per_s"] / one["orders_per_s"]
            head += f"; {ratio:.1f}× {one['tool']}:{one['variant']} ({one['orders_per_s']:,})"
        out.append(head + ".")
    return out


def _rss(r: dict[str, Any]) -> str:
    """Peak RSS in MB: each worker's when there were several.

    >>> _rss({"peak_rss_mb": 40}), _rss({"peak_rss_mb": 81, "peak_rss_mb_each": [40, 41]})
    ('40', '40 + 41')
    """
    each = r.get("peak_rss_mb_each")
    return " + ".join(map(str, each)) if each else str(r["peak_rss_mb"])


def merge_runs(
    earlier: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """This run's runs with the earlier ones of contenders it did not run (the caller checks
    they were on the same input), and those kept. Nothing kept: this run's, in its order;
    else each rerun takes its earlier one's place and new ones come last.

    >>> old = [{"tool": "a", "variant": "1", "n": 0}, {"tool": "b", "variant": "1", "n": 0}]
    >>> runs, kept = merge_runs(old, [{"tool": "c", "variant": "1", "n": 1},
    ...                               {"tool": "a", "variant": "1", "n": 1}])
    >>> [(r["tool"], r["n"]) for r in runs], [r["tool"] for r in kept]
    ([('a', 1), ('b', 0), ('c', 1)], ['b'])
    >>> [r["tool"] for r in merge_runs(old[:1], runs[::-1])[0]]
    ['c', 'b', 'a']
    """

    def key(r: dict[str, Any]) -> tuple[str, str]:
        return r["tool"], r["variant"]

    new = {key(r): r for r in runs}
    kept = [r for r in earlier if key(r) not in new]
    if not kept:
        return runs, []
    merged = [new.pop(key(r), r) for r in earlier]
    return merged + list(new.values()), kept


def _sessions(runs: list[dict[str, Any]]) -> list[str]:
    """A line naming the bench sessions of the runs when there were several (``merge_runs``).

    >>> a = {"at": "2026-11-25T12:00:00+00:00", "etastream_commit": "abc"}
    >>> b = {"at": "2026-12-02T01:00:00+00:00", "etastream_commit": "def"}
    >>> runs = [{"tool": "q", "variant": "x", "session": a},
    ...         {"tool": "e", "variant": "y", "session": b}, {"tool": "e", "variant": "z"}]
    >>> print(_sessions(runs)[0])
    Runs of 2 bench sessions on the same input: abc at 2026-11-25 12:00 UTC (q:x); def at \
2026-12-02 01:00 UTC (e:y).
    >>> _sessions(runs[:1])
    []
    """
    by: dict[tuple[str, str], list[str]] = {}
    for r in runs:
        if r.get("session"):
            at, commit = r["session"]["at"], r["session"].get("etastream_commit") or "?"
            by.setdefault((at, commit), []).append(f"{r['tool']}:{r['variant']}")
    if len(by) < 2:
        return []
    parts = [
        f"{commit} at {at[:10]} {at[11:16]} UTC ({', '.join(names)})"
        for (at, commit), names in sorted(by.items())
    ]
    return [f"Runs of {len(by)} bench sessions on the same input: " + "; ".join(parts) + "."]


def _tool(r: dict[str, Any], chosen: bool) -> str:
    """The tool column: the reference row says so and is never starred as a tool's row."""
    if r["tool"] == REFERENCE:
        return f"{REFERENCE} (reference)"
    return f"{r['tool']}{' *' if chosen else ''}"


def _ceiling_sentence(c: dict[str, Any]) -> str:
    """What the reference row says about the target, for the table's foot.

    >>> print(_ceiling_sentence({"ceiling_orders_per_s": 90_000, "ceiling_correct": True,
    ...     "best_correct_peer": "quix:a", "target_orders_per_s": 30_000}))  # doctest: +ELLIPSIS
    The target needs 30,000 orders/s (1× quix:a); the ceiling (...) did 90,000 orders/s ..., right.
    """
    right = "right" if c["ceiling_correct"] else "WRONG (so it bounds nothing)"
    return (
        f"The target needs {c['target_orders_per_s']:,} orders/s ({TARGET:g}× "
        f"{c['best_correct_peer']}); the ceiling (reference, not a peer: consume, count in a "
        f"dict, produce, no durability) did {c['ceiling_orders_per_s']:,} orders/s on the same "
        f"input, {right}."
    )


def verdict(r: dict[str, Any]) -> str:
    """``right``; ``WRONG`` with what was wrong (an order answered twice is wrong: duplicated);
    ``INCOMPLETE`` when every answer it gave was right but some orders got none (the worker
    stalled or the bench's time limit came).

    >>> verdict({"correct": False, "wrong": 0, "missing": 5, "duplicated": 0, "unexpected": 0})
    'INCOMPLETE: 5 missing, the rest right'
    """
    if r["correct"]:
        return "right"
    parts = [f"{r[k]:,} {k}" for k in ("wrong", "missing", "duplicated", "unexpected") if r[k]]
    if not (r["wrong"] or r["duplicated"] or r["unexpected"]):
        return f"INCOMPLETE: {r['missing']:,} missing, the rest right"
    return "WRONG: " + ", ".join(parts)


def print_table(
    console: Console, runs: list[dict[str, Any]], rows: list[dict[str, Any]], result: dict[str, Any]
) -> None:
    chosen = {id(r) for r in rows}
    machine, data = result["machine"], result["input"]
    title = (
        f"{data['orders']:,} orders, {data['stores']:,} stores, {data['markets']} markets, "
        f"{data['event_time_span_h']} h of event time; {machine['cpus']} cores "
        f"({machine['cpu']}), shared with other work"
    )
    table = Table(title=title)
    for col in ("tool", "variant", "row", "orders/s", "answers", "peak RSS MB"):
        table.add_column(col, justify="right" if col not in ("tool", "variant") else "left")
    for col in ("CPU s worker", "broker", "redis", "worker CPU s (launch)", "start s"):
        table.add_column(col, justify="right")
    for r in runs:
        cpu = r["cpu_s"]
        table.add_row(
            _tool(r, False),
            r["variant"],
            "*" if id(r) in chosen and r["tool"] != REFERENCE else "",
            f"{r['orders_per_s'] or 0:,}",
            verdict(r),
            _rss(r),
            str(cpu.get("worker", "-")),
            str(cpu.get("broker (Tansu)", "-")),
            str(cpu.get("redis-server", "-")),
            str(r["worker_cpu_s_from_launch"] or "-"),
            str(r["startup_s"] or "-"),
        )
    console.print(table)
    ratio = result["speedup_vs_best_correct_peer"]
    if ratio:
        met = "met" if ratio["met"] else "NOT met"
        console.print(
            f"etastream {ratio['etastream_orders_per_s']:,}/s vs best correct peer "
            f"{ratio['best_correct_peer']} {ratio['peer_orders_per_s']:,}/s: "
            f"{ratio['ratio']}x (target {ratio['target']}x: {met})"
        )
    ref = ceiling(rows)
    if ref:
        console.print(_ceiling_sentence(ref))
    for line in scaling(runs):
        console.print(line)


def print_profile(console: Console, profile: dict[str, Any]) -> None:
    if "error" in profile:
        console.print(f"profile: {profile['error']}")
        return
    title = (
        f"etastream worker under py-spy: {profile['seconds']} s of its drain, "
        f"{profile['samples']:,} active samples at {profile['rate_hz']} Hz"
    )
    table = Table(title=title)
    table.add_column("where")
    table.add_column("share", justify="right")
    for name, share in profile["threads_active"].items():
        table.add_row(f"thread {name}: active (running or runnable) of the drain", f"{share:.0%}")
    for name, share in profile["stages"].items():
        table.add_row(f"stage {name}, of active samples", f"{share:.0%}")
    for name, share in profile["own_time"]:
        table.add_row(f"own time {name}, of active samples", f"{share:.0%}")
    console.print(table)


def _cpu(r: dict[str, Any]) -> str:
    cpu = r["cpu_s"]
    names = ("worker", "broker (Tansu)", "redis-server")
    return " / ".join(f"{cpu[n]:.1f}" if cpu.get(n) else "–" for n in names)


def readme_block(result: dict[str, Any]) -> str:
    """README's table of a run (markers included), so the README shows what the bench wrote.

    >>> run = {"tool": "naive", "variant": "v", "label": "a loop", "orders_per_s": 10,
    ...        "peak_rss_mb": 40, "cpu_s": {"worker": 1.0}, "correct": True,
    ...        "loadavg_before": [1.0, 0, 0], "loadavg_after": [2.0, 0, 0]}
    >>> result = {"runs": [run], "rows": [run], "speedup_vs_best_correct_peer": None,
    ...           "machine": {"cpus": 2, "cpu": "X", "memory_gib": 8, "python": "3.11"},
    ...           "versions": {}, "model": None}
    >>> print(readme_block(result).splitlines()[3])
    | naive * | a loop | 10 | right | 40 | 1.0 / – / – |
    """
    chosen = {(r["tool"], r["variant"]) for r in result["rows"]}
    lines = [
        README_START,
        "| tool | variant | orders/s | answers | peak RSS MB | CPU s worker / broker / Redis |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        tool = _tool(r, (r["tool"], r["variant"]) in chosen)
        label = r.get("label") or r["variant"]
        lines.append(
            f"| {tool} | {label} | {r['orders_per_s'] or 0:,} | {verdict(r)} "
            f"| {_rss(r)} | {_cpu(r)} |"
        )
    m, v = result["machine"], result["versions"]
    loads = [x for r in result["runs"] for x in (r["loadavg_before"][0], r["loadavg_after"][0])]
    soft = ", ".join(
        f"{name} {v[key]}"
        for name, key in (
            ("Tansu", "tansu"),
            ("Redis", "redis-server"),
            ("quixstreams", "quixstreams"),
            ("faust-streaming", "faust-streaming"),
            ("confluent-kafka", "confluent-kafka"),
        )
        if v.get(key)
    )
    lines += [
        "",
        f"Machine: {m['cpus']} cores ({m['cpu']}, {m['memory_gib']} GiB), Python {m['python']}"
        + (f"; {soft}" if soft else "")
        + (f"; model {result['model']}" if result.get("model") else "")
        + ". Broker, Redis, the worker and the reader share the cores; load average "
        f"{min(loads):.1f}–{max(loads):.1f} during the runs (other work included).",
    ]
    ratio = result["speedup_vs_best_correct_peer"]
    if ratio:
        met = "met" if ratio["met"] else "not met"
        lines.append(
            f"etastream / best correct peer ({ratio['best_correct_peer']}): "
            f"{ratio['ratio']}× (target ≥ {ratio['target']:g}×: {met})."
        )
    ref = ceiling(result["rows"])
    if ref:
        lines.append(_ceiling_sentence(ref))
    lines += scaling(result["runs"])
    lines += _sessions(result["runs"])
    lines.append(README_END)
    return "\n".join(lines)
