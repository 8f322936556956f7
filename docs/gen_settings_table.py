"""Write the README's table of ``ETA_*`` settings from ``Settings.model_fields``.

The table lives between two marker comments in README.md, so it can never drift from the code:
``tests/unit/project/test_docs.py`` fails when a setting changes and the table was not regenerated.

    python docs/gen_settings_table.py            # print the table
    python docs/gen_settings_table.py --write    # rewrite it in README.md
    python docs/gen_settings_table.py --check    # exit 1 when README.md is out of date
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from stream_features.settings import Settings

__all__ = ["BEGIN", "END", "main", "render_readme", "settings_table", "type_name"]

BEGIN = "<!-- settings-table:begin (python docs/gen_settings_table.py --write) -->"
END = "<!-- settings-table:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"

# Said here only for fields that carry no description= in Settings; a description there wins.
FALLBACK_DOC = {
    "orders_topic": "topic of OrderCreated (key store_id)",
    "dasher_events_topic": "topic of DasherEvent and MarketSupplySnapshot (key market_id)",
    "deliveries_topic": "topic of OrderDelivered (key store_id)",
    "predictions_topic": "topic of DeliveryPrediction (key order_id)",
    "dlq_topic": "dead letters: the rejected bytes, their source and the reason",
    "monitoring_topic": "topic of the monitor's drift and error records",
    "consumer_group": "consumer group the stream workers share",
    "engine": "Kafka engine of the stream worker",
    "http_host": "address the HTTP API binds; 0.0.0.0 inside a container",
    "http_port": "port the HTTP API listens on",
    "max_request_bytes": "largest HTTP request body accepted",
    "batch_out_dir": "where batch predictions are written as Parquet",
}


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type.

    >>> type_name(int | None), type_name(dict[str, str]), type_name(typing.Literal["a", "b"])
    ('int or unset', 'dict[str, str]', 'a / b')
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " / ".join(str(arg) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        names = [type_name(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(names) + " or unset"
    if origin is not None:
        return str(annotation).replace("typing.", "")
    name = getattr(annotation, "__name__", str(annotation))
    return {"SecretStr": "secret"}.get(name, name)


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict) and not value:
        return "none"
    return f"`{value}`"


def _cell(text: str) -> str:
    """Escape what a markdown table cell would misread.

    >>> print(_cell("'Bearer <key>' | x"))
    'Bearer &lt;key&gt;' \\| x
    """
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """The markdown table: one row per ``Settings`` field, in declaration order."""
    rows = [
        "| Variable | Type | Default | Meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        variable = f"ETA_{name.upper()}"
        if typing.get_origin(field.annotation) is dict:
            variable += "__*"
        doc = field.description or FALLBACK_DOC.get(name, "")
        cells = [f"`{variable}`", type_name(field.annotation), _default(field), doc]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def render_readme(readme: str) -> str:
    """The README with the text between the markers replaced by the current table."""
    head, found, rest = readme.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"README.md lacks the markers {BEGIN!r} … {END!r}")
    return f"{head}{BEGIN}\n{settings_table()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    action.add_argument("--check", action="store_true", help="exit 1 when README.md is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print(settings_table(), end="")
        return 0
    current = args.readme.read_text()
    wanted = render_readme(current)
    if args.check:
        if current != wanted:
            print(f"{args.readme} is stale: run python docs/gen_settings_table.py --write")
            return 1
        return 0
    args.readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
