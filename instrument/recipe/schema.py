"""Validate recipe data against recipe.schema.json and turn jsonschema's errors into short located ones."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..errors import Location, SchemaError
from .model import Path
from .quickcheck import is_valid
from .source import Source

if TYPE_CHECKING:
    # jsonschema is imported only when a recipe is not certainly valid (recipe/quickcheck.py):
    # its import is about 60 ms of a 250 ms start.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number",
    "boolean": "a boolean (true or false)", "object": "a mapping", "array": "a list", "null": "null",
}

# What each pattern of the schema means, in words a recipe author reads.
_PATTERN_HINTS = {
    "^[a-z0-9][a-z0-9._-]*$": "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
    "^[A-Za-z_][A-Za-z0-9_.-]*$": "a letter or '_' followed by letters, digits, '_', '.' or '-'",
    "^[A-Za-z_][A-Za-z0-9_]*$": "an identifier (a letter or '_' followed by letters, digits or '_')",
    "^(\\{[A-Za-z_][A-Za-z0-9_]*\\}|[0-9]+)$": "a pid or a '{param}' field",
    "^\\s*([0-9A-Fa-f]{2}\\s*)+$": "hex byte pairs such as 'deadbeef' or '90 90'",
    "^[^=\\u0000]+$": "a variable name without '=' or NUL",
}

# Lower numbers win when several errors point at the same place: a wrong
# type explains everything else wrong with that value.
_RANK = {"type": 0, "const": 1, "enum": 1, "additionalProperties": 2, "required": 3}


# Actions registered from outside instrument (instrument.actions.register with a
# schema): name -> (JSON Schema of its value, whether it may be written bare).
# The shipped actions are described in recipe.schema.json itself.
_ADDED_ACTIONS: dict[str, tuple[dict[str, Any], bool]] = {}


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    text = resources.files("instrument").joinpath("schemas/recipe.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    """The shipped schema with the added actions in it."""
    if not _ADDED_ACTIONS:
        return _shipped()
    schema = copy.deepcopy(_shipped())
    action = schema["$defs"]["action"]
    for name, (fragment, bare) in _ADDED_ACTIONS.items():
        action["else"]["properties"][name] = copy.deepcopy(fragment)
        if bare:
            action["then"]["enum"].append(name)
    return schema


@lru_cache(maxsize=1)
def validator() -> Draft202012Validator:
    """The recipe validator, built once (again after an action is added)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema())


def schema_json() -> dict[str, Any]:
    """The recipe JSON Schema (a copy: callers may modify it)."""
    return copy.deepcopy(_schema())


def action_kinds() -> tuple[str, ...]:
    """Every action a recipe may name (the schema's, so what validates): the shipped
    ones, then the added ones."""
    return tuple(_schema()["$defs"]["action"]["else"]["properties"])


def add_action(name: str, fragment: Mapping[str, Any], *, bare: bool = False) -> None:
    """Let recipes name the action `name`, its value valid under the JSON Schema
    `fragment`; `bare`: it may also be written without a value (`- name`)."""
    if name in action_kinds():
        raise ValueError(f"action '{name}' is already in the recipe schema")
    _ADDED_ACTIONS[name] = (copy.deepcopy(dict(fragment)), bare)
    _forget()


def remove_action(name: str) -> None:
    """Undo add_action (a test's clean-up); the shipped actions stay."""
    if _ADDED_ACTIONS.pop(name, None) is not None:
        _forget()


def _forget() -> None:
    _schema.cache_clear()
    validator.cache_clear()


def validate_source(source: Source) -> list[SchemaError]:
    """Every schema error of `source`, one per failing place, in file order."""
    if is_valid(_schema(), source.data):
        return []           # certainly valid: jsonschema would say nothing (and costs its import)
    mapper = _Mapper(source)
    errors = list(validator().iter_errors(source.data))
    # A value of the wrong type fails every other keyword too; say only that.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    found: dict[tuple[int, int], tuple[int, SchemaError]] = {}
    for error in errors:
        if tuple(error.absolute_path) in mistyped and error.validator != "type":
            continue
        for rank, err in mapper.translate(error):
            loc = err.location or Location(source.file)
            place = (loc.line, loc.col)
            if place not in found or rank < found[place][0]:
                found[place] = (rank, err)
    return [err for _, (_, err) in sorted(found.items())]


def _show(value: Any) -> str:
    """A value as an error message names it: "string 'ten'", "integer 5"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    return "a list" if isinstance(value, list) else "a mapping"


def _words(items: Iterable[Any]) -> str:
    return ", ".join(str(i) for i in items)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib      # on the error path only: its import (heapq and friends) is ~2 ms of the start

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _key_name(path: Path) -> str:
    """How a message names the value at `path`: 'limit', 'run[1]'."""
    if not path:
        return "recipe"
    if isinstance(path[-1], int):
        return f"{_key_name(path[:-1])}[{path[-1]}]"
    return str(path[-1])


def _describe(path: Path) -> str:
    """How a message names the container at `path`: 'recipe', 'breakpoint 2', 'dump action'."""
    if not path:
        return "recipe"
    if path[:1] == ("breakpoints",) and len(path) == 2:
        return f"breakpoint {path[1] + 1}"
    if path[:1] == ("params",) and len(path) == 2:
        return f"param '{path[1]}'"
    if len(path) >= 2 and isinstance(path[-1], str) and isinstance(path[-2], int) and path[-1] in action_kinds():
        return f"{path[-1]} action"
    return ".".join(str(p) for p in path)


class _Mapper:
    """Turns one jsonschema ValidationError into located SchemaErrors."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def at(self, path: Path, *, key: bool = False) -> Location:
        table = self.source.key_positions if key else self.source.positions
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.source.positions:
                return self.source.positions[p]
            p = p[:-1]
        return self.source.positions.get((), Location(self.source.file, 1, 1))

    def translate(self, error: ValidationError) -> list[tuple[int, SchemaError]]:
        if error.context and error.validator in ("anyOf", "oneOf"):
            # The schema avoids anyOf/oneOf where it can (if/then gives
            # better errors); where one remains, report its most relevant
            # branch rather than "is not valid under any of the given schemas".
            from jsonschema.exceptions import best_match

            error = best_match(error.context)
        path: Path = tuple(error.absolute_path)
        rank = _RANK.get(str(error.validator), 5)
        if error.validator == "not" and not _is_exclusive(error.validator_value):
            rank = 0    # "'access' does not apply" explains any enum error there
        if error.validator == "additionalProperties":
            return [(rank, e) for e in self._unknown_keys(error, path)]
        if list(error.schema_path)[-2:-1] == ["propertyNames"]:
            return [(rank, self._bad_name(error, path))]
        handler = getattr(self, f"_on_{error.validator}", None)
        message = handler(error, path) if handler else f"{_key_name(path)}: {error.message}"
        exclusive = error.validator == "not" and _is_exclusive(error.validator_value)
        loc = self.at(path + ("attach",), key=True) if exclusive else self.at(path)
        return [(rank, SchemaError(message, loc))]

    # -- errors that point at keys ---------------------------------------
    def _unknown_keys(self, error: ValidationError, path: Path) -> list[SchemaError]:
        schema: Any = error.schema           # jsonschema's stubs allow Unset; a raised error has them
        instance: Any = error.instance
        allowed = list(schema.get("properties", {}))
        out = []
        for key in instance:
            if key in allowed:
                continue
            hint = _did_you_mean(key, allowed)
            if "log" in allowed and "dump" in allowed:
                message = f"unknown action '{key}' (expected one of {_words(action_kinds())}){hint}"
            elif "create_process" in allowed:
                message = f"unknown event '{key}' (expected an event name, an exception name or any){hint}"
            else:
                message = f"unknown key '{key}' in {_describe(path)} (expected one of {_words(allowed)}){hint}"
            out.append(SchemaError(message, self.at(path + (key,), key=True)))
        return out

    def _bad_name(self, error: ValidationError, path: Path) -> SchemaError:
        name = str(error.instance)
        hint = _PATTERN_HINTS.get(str(error.validator_value), f"matching {error.validator_value}")
        return SchemaError(f"invalid name '{name}' in {_describe(path)}: must be {hint}",
                           self.at(path + (name,), key=True))

    # -- one handler per JSON Schema keyword -----------------------------
    def _on_type(self, error: ValidationError, path: Path) -> str:
        expected_value: Any = error.validator_value
        types: list[str] = expected_value if isinstance(expected_value, list) else [expected_value]
        expected = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        return f"'{_key_name(path)}': expected {expected}, got {_show(error.instance)}"

    def _on_enum(self, error: ValidationError, path: Path) -> str:
        value = error.instance
        if path and isinstance(path[-1], int) and _is_action_list(path[:-1]):
            if value in action_kinds():
                return f"action '{value}' needs a value (write '{value}: ...')"
            shown = value if isinstance(value, str) else _show(value)
            return f"unknown action '{shown}' (expected one of {_words(action_kinds())})"
        suffix = self._breakpoint_kind(path)
        allowed: Any = error.validator_value
        return f"'{_key_name(path)}' must be one of {_words(allowed)}{suffix}, got {value!r}"

    def _on_const(self, error: ValidationError, path: Path) -> str:
        if path == ("version",):
            return f"'version' must be 1, got {error.instance!r} (this instrument reads recipe version 1)"
        if path[-1:] == ("registers",):
            return f"'registers' must be a list of register names or 'all', got {error.instance!r}"
        return f"'{_key_name(path)}' must be {error.validator_value!r}, got {error.instance!r}"

    def _on_required(self, error: ValidationError, path: Path) -> str:
        required: Any = error.validator_value
        instance: Any = error.instance
        missing = [k for k in required if k not in instance]
        if path[:1] == ("params",) and missing == ["type"]:
            return f"param '{path[1]}' needs a 'type' (or a 'default' to infer it from)"
        return f"missing required key '{missing[0]}' in {_describe(path)}"

    def _on_pattern(self, error: ValidationError, path: Path) -> str:
        hint = _PATTERN_HINTS.get(str(error.validator_value), f"matching {error.validator_value}")
        return f"'{_key_name(path)}' must be {hint}, got {error.instance!r}"

    def _on_minimum(self, error: ValidationError, path: Path) -> str:
        return f"'{_key_name(path)}' must be at least {error.validator_value}, got {error.instance!r}"

    def _on_maximum(self, error: ValidationError, path: Path) -> str:
        return f"'{_key_name(path)}' must be at most {error.validator_value}, got {error.instance!r}"

    def _on_exclusiveMinimum(self, error: ValidationError, path: Path) -> str:
        return f"'{_key_name(path)}' must be greater than {error.validator_value}, got {error.instance!r}"

    def _on_minItems(self, error: ValidationError, path: Path) -> str:
        return f"'{_key_name(path)}' must not be empty"

    def _on_minLength(self, error: ValidationError, path: Path) -> str:
        return f"'{_key_name(path)}' must not be empty"

    def _on_uniqueItems(self, error: ValidationError, path: Path) -> str:
        return f"'{_key_name(path)}' lists the same item twice"

    def _on_minProperties(self, error: ValidationError, path: Path) -> str:
        kind = path[-1] if path else None
        if kind == "log":
            return "log needs 'message' or 'registers' (or both)"
        if kind == "set":
            return "set needs at least one register"
        if kind == "write":
            return "write needs a payload: bytes, string, or one of u8..u64, i8..i64"
        return "empty action: write it as '- NAME: VALUE', e.g. '- log: \"text\"'"

    def _on_maxProperties(self, error: ValidationError, path: Path) -> str:
        instance: Any = error.instance
        keys = list(instance)
        if path[-1:] == ("write",):
            payloads = [k for k in keys if k != "at"]
            return f"write takes exactly one payload, got {_words(payloads)}"
        return (f"an action has exactly one key, got {_words(keys)}: "
                "write each action as its own list item")

    def _on_not(self, error: ValidationError, path: Path) -> str:
        exclusive: Any = error.validator_value
        if _is_exclusive(exclusive):
            keys = " and ".join(f"'{k}'" for k in exclusive["required"])
            return f"{keys} are mutually exclusive: give one of them"
        kind = self._breakpoint_type(path[:-1]) or "soft"
        return f"'{_key_name(path)}' does not apply to a {kind} breakpoint"

    # -- helpers ---------------------------------------------------------
    def _breakpoint_type(self, bp_path: Path) -> str | None:
        if len(bp_path) != 2 or bp_path[0] != "breakpoints":
            return None
        bps = self.source.data.get("breakpoints")
        bp = bps[bp_path[1]] if isinstance(bps, list) else None
        return str(bp.get("type", "soft")) if isinstance(bp, Mapping) else None

    def _breakpoint_kind(self, path: Path) -> str:
        if path[-1:] in (("access",), ("size",)):
            kind = self._breakpoint_type(path[:-1])
            if kind in ("hardware", "memory"):
                return f" for a {kind} breakpoint"
        return ""


def _is_action_list(path: Path) -> bool:
    if path in (("crash",),):
        return True
    if len(path) == 2 and path[0] == "events":
        return True
    return len(path) == 3 and path[0] == "breakpoints" and path[2] in ("actions", "on_return")


def _is_exclusive(not_schema: Any) -> bool:
    """A `not: {required: [a, b]}` schema: keys that may not appear together."""
    return isinstance(not_schema, Mapping) and "required" in not_schema
