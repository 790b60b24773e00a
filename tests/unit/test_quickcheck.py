"""The fast schema check (recipe/quickcheck.py) agrees with jsonschema, and a valid recipe loads without importing jsonschema."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from jsonschema import Draft202012Validator

from instrument.recipe import schema as recipe_schema
from instrument.recipe.quickcheck import is_valid
from instrument.recipe.source import parse_source

from tests.unit.test_malformed_recipes import CASES

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "instrument" / "recipes").glob("*.yaml"))

# Values put in place of every node of a shipped recipe: each JSON type, edge values of
# numbers and strings, and the spellings YAML gives booleans and numbers.
REPLACEMENTS: list[Any] = [None, True, False, 0, 1, -1, 1.0, 1.5, "", "x", "rip", "0x10", [], ["x"], [1],
                           {}, {"x": 1}, {"log": "m"}, "stop", "soft", "hardware", "write"]


def _data(path: Path) -> Any:
    return parse_source(path.read_text(), str(path)).data


def _paths(node: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, here + (i,))


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def _mutations(data: Any) -> Iterator[Any]:
    for path in list(_paths(data)):
        if not path:
            continue
        for value in REPLACEMENTS:
            m = copy.deepcopy(data)
            _get(m, path[:-1])[path[-1]] = copy.deepcopy(value)
            yield m
        parent = _get(data, path[:-1])
        if isinstance(parent, dict):
            m = copy.deepcopy(data)
            del _get(m, path[:-1])[path[-1]]
            yield m
            m = copy.deepcopy(data)
            _get(m, path[:-1])["bogus_key"] = 1
            yield m


def _jsonschema_valid(data: Any) -> bool:
    return not any(Draft202012Validator(recipe_schema._schema()).iter_errors(data))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_are_certainly_valid(path: Path) -> None:
    assert is_valid(recipe_schema._schema(), _data(path))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_mutated_recipes_get_jsonschemas_verdict(path: Path) -> None:
    # The subset the checker implements covers the whole recipe schema, so it agrees
    # both ways; the property that matters is that it never calls invalid data valid.
    schema = recipe_schema._schema()
    validator = Draft202012Validator(schema)
    checked = 0
    for data in _mutations(_data(path)):
        expected = not any(validator.iter_errors(data))
        assert is_valid(schema, data) == expected, data
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("case", [c for c in CASES if c[4].__name__ == "SchemaError"], ids=lambda c: c[0])
def test_malformed_recipes_are_never_certainly_valid(case: tuple[Any, ...]) -> None:
    data = parse_source(case[1], "t.yaml").data
    assert not is_valid(recipe_schema._schema(), data)
    assert not _jsonschema_valid(data)


def test_an_unknown_keyword_means_ask_jsonschema() -> None:
    assert not is_valid({"type": "string", "format": "email"}, "a@b")
    assert not is_valid({"patternProperties": {"^x": {}}, "additionalProperties": False}, {"x": 1})


def test_json_equality_as_jsonschema_has_it() -> None:
    assert not is_valid({"const": 1}, True)
    assert is_valid({"const": 1}, 1.0)
    assert not is_valid({"type": "integer"}, False)
    assert is_valid({"type": "integer"}, 2.0)
    assert not is_valid({"enum": [[1, 2]]}, [1, True])
    assert not is_valid({"uniqueItems": True}, [1, 1.0])


def test_a_valid_recipe_loads_without_importing_jsonschema(tmp_path: Path) -> None:
    code = ("import sys; from instrument.compiler.collect import compile_recipe; "
            f"compile_recipe({str(RECIPES[0])!r}); print('jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_an_invalid_recipe_still_gets_located_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbreakpoints:\n  - at: main\n    limit: -1\n")
    code = ("from instrument.recipe.load import salvage_recipe; "
            f"print([str(e) for e in salvage_recipe({str(bad)!r})[1]])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"{bad}:4:12: error:" in out and "'limit'" in out
