"""The recipe JSON Schema: valid 2020-12, documented everywhere, and in step with the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from jsonschema import Draft202012Validator

from instrument.events import EVENT_RECORD_NAMES, ExceptionCode
from instrument.recipe.model import ACTION_KINDS, BREAKPOINT_TYPES, PARAM_TYPES
from instrument.recipe.schema import _Mapper, schema_json, validator
from instrument.recipe.source import parse_source

REPO = Path(__file__).resolve().parents[2]

SPEC_EXAMPLE = (Path(__file__).parent / "data" / "spec_example.yaml").read_text()  # SPEC section 3, verbatim


def _subschemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(pointer, schema, is_named) for every subschema; named = a property or a $def."""
    if not isinstance(node, dict):
        return
    for keyword in ("properties", "$defs"):
        for name, sub in node.get(keyword, {}).items():
            if isinstance(sub, dict):
                yield f"{where}/{keyword}/{name}", sub, True
                yield from _subschemas(sub, f"{where}/{keyword}/{name}")
    for keyword in ("items", "additionalProperties", "propertyNames", "if", "then", "else", "not"):
        sub = node.get(keyword)
        if isinstance(sub, dict):
            yield f"{where}/{keyword}", sub, False
            yield from _subschemas(sub, f"{where}/{keyword}")
    for keyword in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(node.get(keyword, [])):
            yield f"{where}/{keyword}/{i}", sub, False
            yield from _subschemas(sub, f"{where}/{keyword}/{i}")


def test_schema_is_valid_2020_12() -> None:
    schema = schema_json()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"] and schema["description"]


def test_every_property_and_definition_has_a_description() -> None:
    schema = schema_json()
    named = [(p, s) for p, s, is_named in _subschemas(schema) if is_named]
    assert len(named) > 80
    missing = [p for p, s in named if not s.get("description")]
    assert missing == []


def test_objects_are_closed() -> None:
    # Every mapping with fixed keys refuses unknown ones (a typo must be an
    # error); only the if/then overlays that narrow a breakpoint's keys are open.
    schema = schema_json()
    open_ = [p for p, sub, _ in [("#", schema, True), *_subschemas(schema)]
             if "properties" in sub and sub.get("additionalProperties") is not False
             and "/allOf/" not in p]
    assert open_ == []


def test_spec_example_validates() -> None:
    data = yaml.safe_load(SPEC_EXAMPLE)
    assert list(validator().iter_errors(data)) == []


def test_schema_examples_validate() -> None:
    schema = schema_json()
    defs = schema["$defs"]
    count = 0
    for pointer, sub, _ in [("#", schema, True), *_subschemas(schema)]:
        if "examples" not in sub:
            continue
        v = Draft202012Validator({**sub, "$defs": defs})
        for example in sub["examples"]:
            assert list(v.iter_errors(example)) == [], (pointer, example)
            count += 1
    assert count > 20


def test_validator_is_built_once() -> None:
    assert validator() is validator()


def test_schema_json_is_a_copy() -> None:
    first = schema_json()
    first["title"] = "changed"
    assert schema_json()["title"] != "changed"


def test_shipped_file_is_the_one_loaded() -> None:
    on_disk = json.loads((REPO / "schemas" / "recipe.schema.json").read_text())
    assert on_disk == schema_json()


def test_event_keys_match_events_module() -> None:
    keys = set(schema_json()["properties"]["events"]["properties"])
    expected = set(EVENT_RECORD_NAMES.values()) | {c.name.lower() for c in ExceptionCode} | {"any"}
    assert keys == expected


def test_names_match_the_model() -> None:
    schema = schema_json()
    defs = schema["$defs"]
    assert tuple(defs["action"]["else"]["properties"]) == ACTION_KINDS
    assert tuple(defs["breakpoint"]["properties"]["type"]["enum"]) == BREAKPOINT_TYPES
    assert tuple(defs["param"]["then"]["properties"]["type"]["enum"]) == PARAM_TYPES


def test_documented_defaults() -> None:
    defs = schema_json()["$defs"]
    assert defs["breakpoint"]["properties"]["type"]["default"] == "soft"
    assert defs["breakpoint"]["properties"]["enabled"]["default"] is True
    assert defs["backtrace"]["properties"]["depth"]["default"] == 32
    assert defs["disassemble"]["properties"]["count"]["default"] == 8
    assert defs["target"]["properties"]["follow_forks"]["default"] is False


@pytest.mark.parametrize("recipe", [
    {"version": 1, "name": "x", "description": "d", "breakpoints": [{"at": "f", "type": "hardware", "access": "any"}]},
    {"version": 1, "name": "x", "description": "d", "breakpoints": [{"at": "f", "size": 4}]},
    {"version": 1, "name": "x", "description": "d", "crash": [{"write": {"at": 1, "u8": 1, "u16": 2}}]},
    {"version": 1, "name": "x", "description": "d", "target": {"run": ["a"], "attach": 1}},
])
def test_schema_alone_refuses(recipe: dict[str, Any]) -> None:
    # These rules live in the schema itself, so an editor flags them too.
    assert list(validator().iter_errors(recipe)) != []


def test_any_of_reports_the_most_relevant_branch() -> None:
    # The recipe schema avoids anyOf, but a failing one must still say
    # something useful rather than "is not valid under any of the given schemas".
    source = parse_source("version: 1\nname: 5\n", "a.yaml")
    schema = {"properties": {"name": {"anyOf": [{"type": "string"}, {"type": "array"}]}}}
    (error,) = Draft202012Validator(schema).iter_errors(source.data)
    ((_, err),) = _Mapper(source).translate(error)
    assert str(err).startswith("a.yaml:2:7: error: 'name': expected a")
    assert "got integer 5" in err.message
