"""Print the feature registry as a markdown table, from ``stream_features.definitions``.

python docs/gen_features_table.py           # print the table
python docs/gen_features_table.py --write   # rewrite it between the markers in features.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_features.definitions import FEATURES, BatchFeature, OrderFeature, StreamFeature

__all__ = ["BEGIN", "END", "features_table", "main"]

BEGIN = "<!-- features-table:begin (python docs/gen_features_table.py --write) -->"
END = "<!-- features-table:end -->"
PAGE = Path(__file__).resolve().parent / "features.md"


def _row(f: OrderFeature | StreamFeature | BatchFeature) -> list[str]:
    if isinstance(f, OrderFeature):
        return [f.name, "order", f"own field `{f.field}` ({f.dtype})", "—", "required", f.doc]
    if isinstance(f, StreamFeature):
        agg = f"{f.agg} of `{f.signal}`" if f.signal else f"{f.agg} of {' / '.join(f.of or ())}"
        window = f"{f.window_s // 60} min" if f.window_s else "—"
        return [f.name, f.entity, agg, window, str(f.default), f.doc]
    fallback = f" (then {f.fallback})" if f.fallback else ""
    return [
        f.name,
        " × ".join(f.keys),
        f"{f.agg} of duration (batch)",
        f"{f.window_days} days",
        f"{f.default}{fallback}",
        f.doc,
    ]


def features_table() -> str:
    """One row per entry of ``FEATURES``, in the model's column order."""
    lines = [
        "| Feature | Entity / keys | Aggregation | Window | Default | Meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for feature in FEATURES:
        cells = [c.replace("|", "\\|") for c in _row(feature)]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if not args.write:
        print(features_table(), end="")
        return 0
    head, _, rest = PAGE.read_text().partition(BEGIN)
    _, _, tail = rest.partition(END)
    PAGE.write_text(f"{head}{BEGIN}\n{features_table()}{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
