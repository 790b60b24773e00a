"""Make schema-invalid recipe data valid by cutting out what is wrong, so the later checks still run.

`validate` and `run` report every error of a file in one pass: the schema's,
and the semantic, expression and symbol errors of everything else. Those later
stages need a schema-valid model, so each failing value is cut out (an optional
key removed, a list item replaced by a harmless placeholder so the positions of
its siblings stay right, a required `at:` or `version` given a placeholder) and
the data validated again, until it passes. What was cut has already been
reported; the placeholders never run, because a recipe with errors never does.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:       # the validator comes from recipe/schema.py, which imports jsonschema lazily
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

Path = tuple[Any, ...]

MAX_ROUNDS = 12          # each round cuts at least one value; recipes nest far less deep

# What stands in for an invalid item of a list, by the list it is in: a value that
# passes the schema and that no later check complains about.
_ACTION_PLACEHOLDER = "stop"
_SET_AT = "set"          # an operation: give a required key a placeholder value


def salvage(data: dict[str, Any], validator: Draft202012Validator) -> dict[str, Any] | None:
    """A schema-valid copy of `data` with every invalid part cut out; None when the
    document has nothing left to check (its top level itself is wrong)."""
    data = copy.deepcopy(data)
    for _ in range(MAX_ROUNDS):
        errors = list(validator.iter_errors(data))
        if not errors:
            return data
        operations = {op for e in errors for op in _operations(e)}
        if any(op[1] == () and op[0] != _SET_AT for op in operations):
            return None
        # Deepest first: cutting a parent first would leave its children's paths dangling.
        for op in sorted(operations, key=lambda o: len(o[1]), reverse=True):
            _apply(data, op)
    return None


Operation = tuple[str, Path, Any]      # ("cut", path, None) | ("set", path to a mapping, (key, value))


def _operations(error: ValidationError) -> Iterable[Operation]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    value: Any = error.validator_value
    schema: Any = error.schema
    if kind == "required":
        missing = [k for k in value if isinstance(error.instance, dict) and k not in error.instance]
        if path == () and missing == ["version"]:
            return [(_SET_AT, (), ("version", 1))]
        if len(path) == 2 and path[0] == "breakpoints" and missing == ["at"]:
            return [(_SET_AT, path, ("at", 0))]
        return [("cut", path, None)]
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = schema.get("properties", {})
        return [("cut", path + (k,), None) for k in error.instance if k not in allowed]
    if list(error.schema_path)[-2:-1] == ["propertyNames"]:
        return [("cut", path + (error.instance,), None)]
    if kind == "not" and isinstance(value, dict) and "required" in value:
        return [("cut", path + (value["required"][-1],), None)]
    return [("cut", path, None)]


def _apply(data: dict[str, Any], op: Operation) -> None:
    what, path, arg = op
    if what == _SET_AT:
        target = _get(data, path)
        if isinstance(target, dict):
            key, value = arg
            target[key] = value
        return
    parent = _get(data, path[:-1])
    key = path[-1]
    if isinstance(parent, dict):
        parent.pop(key, None)
    elif isinstance(parent, list) and isinstance(key, int) and key < len(parent):
        placeholder = _placeholder(path[:-1], parent[key])
        if placeholder is None:
            # A list whose items nothing later checks by position (tags, rules): drop it whole.
            _apply(data, ("cut", path[:-1], None))
        else:
            parent[key] = placeholder


def _get(data: Any, path: Path) -> Any:
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _placeholder(list_path: Path, old: Any) -> Any:
    """A valid stand-in for an invalid item of the list at `list_path`, or None."""
    if list_path == ("breakpoints",):
        # Keep its id, so an `enable:` naming it is not reported as dangling too.
        bp_id = old.get("id") if isinstance(old, dict) else None
        return {"at": 0, "id": bp_id} if isinstance(bp_id, str) else {"at": 0}
    if _is_action_list(list_path):
        return _ACTION_PLACEHOLDER
    if list_path[-1:] == ("registers",):
        return "rip"
    if list_path == ("target", "run"):
        return "x"
    return None


def _is_action_list(path: Path) -> bool:
    if path == ("crash",):
        return True
    if len(path) == 2 and path[0] == "events":
        return True
    return len(path) == 3 and path[0] == "breakpoints" and path[2] in ("actions", "on_return")
