"""``eta schema``: every message's schema by name, or one bare (what a validator takes)."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from predictor.cli import app
from stream_features.contract import json_schemas


def test_one_schema_is_printed_bare_and_all_by_name() -> None:
    one = CliRunner().invoke(app, ["schema", "OrderCreated"])
    every = CliRunner().invoke(app, ["schema"])
    assert one.exit_code == 0 and every.exit_code == 0, one.output + every.output
    bare = orjson.loads(one.stdout)
    assert bare == json_schemas()["OrderCreated"]
    assert bare["title"] == "OrderCreated" and "created_at" in bare["properties"]
    assert set(orjson.loads(every.stdout)) == set(json_schemas())


def test_an_unknown_name_lists_the_known_ones() -> None:
    wrong = CliRunner().invoke(app, ["schema", "Order"])
    assert wrong.exit_code == 2 and "OrderCreated" in wrong.output
