"""A fast yes-or-ask check of recipe data against the recipe JSON Schema, so a valid recipe never imports jsonschema.

Importing jsonschema (referencing, attrs, rpds, its format checkers) costs about
60 ms of a 250 ms start. This module knows the subset of JSON Schema 2020-12 the
recipe schema uses and answers only one question: is the data certainly valid?
True means jsonschema would find no error. False means "don't know": the data is
invalid, or the schema uses a keyword this module does not implement (an action
added with its own schema, say); either way the caller asks jsonschema, which
produces the errors (file:line:col, unchanged). So a bug here can only cost
time, never change a message, provided it never says True for invalid data:
tests/unit/test_quickcheck.py holds it to jsonschema's verdict on every recipe
of the tree and on mutations of them.

The semantics follow jsonschema's own: booleans are not numbers, 1.0 is an
integer, `pattern` is re.search, enum/const compare as JSON values (True != 1).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable

Schema = Any


class _Unsure(Exception):
    """A keyword or a value this checker does not handle: let jsonschema decide."""


# Keywords that never fail a value.
_ANNOTATIONS = frozenset({"description", "examples", "default", "title", "$schema", "$id",
                          "$comment", "$defs", "deprecated", "readOnly", "writeOnly"})


def is_valid(schema: Schema, data: Any) -> bool:
    """True only when `data` is certainly valid under `schema`; False: ask jsonschema."""
    try:
        return _Checker(schema).ok(schema, data)
    except (_Unsure, RecursionError, TypeError, ValueError, KeyError, re.error):
        return False


def _is_type(x: Any, t: str) -> bool:
    if t == "object":
        return isinstance(x, dict)
    if t == "array":
        return isinstance(x, list)
    if t == "string":
        return isinstance(x, str)
    if t == "boolean":
        return isinstance(x, bool)
    if t == "null":
        return x is None
    if t == "integer":
        if isinstance(x, bool):
            return False
        return isinstance(x, int) or (isinstance(x, float) and x.is_integer())
    if t == "number":
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    raise _Unsure(t)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality as jsonschema's _utils.equal has it: True is not 1, 1 is 1.0."""
    if isinstance(a, str) or isinstance(b, str):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    raise _Unsure(type(a))          # a date or a set from YAML: not a JSON value


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class _Checker:
    def __init__(self, root: Schema) -> None:
        self.root = root
        self.keywords: dict[str, Callable[[Any, Any, dict[str, Any]], bool]] = {
            "type": self._type, "$ref": self._ref, "properties": self._properties,
            "additionalProperties": self._additional, "required": self._required,
            "pattern": self._pattern, "enum": self._enum, "const": self._const,
            "minimum": self._minimum, "maximum": self._maximum,
            "exclusiveMinimum": self._exclusive_minimum, "items": self._items,
            "minItems": self._min_items, "uniqueItems": self._unique_items,
            "minLength": self._min_length, "minProperties": self._min_properties,
            "maxProperties": self._max_properties, "propertyNames": self._property_names,
            "if": self._if, "then": _skip, "else": _skip, "not": self._not,
            "allOf": self._all_of, "anyOf": self._any_of,
        }

    def ok(self, schema: Schema, x: Any) -> bool:
        if schema is True:
            return True
        if schema is False:
            return False
        if not isinstance(schema, dict):
            raise _Unsure(schema)
        for key, value in schema.items():
            check = self.keywords.get(key)
            if check is None:
                if key in _ANNOTATIONS:
                    continue
                raise _Unsure(key)
            if not check(value, x, schema):
                return False
        return True

    def _type(self, t: Any, x: Any, _s: dict[str, Any]) -> bool:
        return any(_is_type(x, one) for one in t) if isinstance(t, list) else _is_type(x, t)

    def _ref(self, ref: Any, x: Any, _s: dict[str, Any]) -> bool:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise _Unsure(ref)
        node = self.root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[part]
        return self.ok(node, x)

    def _properties(self, props: Any, x: Any, _s: dict[str, Any]) -> bool:
        if not isinstance(x, dict):
            return True
        return all(self.ok(sub, x[k]) for k, sub in props.items() if k in x)

    def _additional(self, extra: Any, x: Any, s: dict[str, Any]) -> bool:
        if not isinstance(x, dict):
            return True
        if "patternProperties" in s:
            raise _Unsure("patternProperties")
        known = s.get("properties", {})
        return all(self.ok(extra, v) for k, v in x.items() if k not in known)

    def _required(self, names: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not isinstance(x, dict) or all(n in x for n in names)

    def _pattern(self, pattern: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not isinstance(x, str) or _regex(pattern).search(x) is not None

    def _enum(self, choices: Any, x: Any, _s: dict[str, Any]) -> bool:
        return any(_equal(x, c) for c in choices)

    def _const(self, value: Any, x: Any, _s: dict[str, Any]) -> bool:
        return _equal(x, value)

    def _minimum(self, m: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not _is_number(x) or x >= m

    def _maximum(self, m: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not _is_number(x) or x <= m

    def _exclusive_minimum(self, m: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not _is_number(x) or x > m

    def _items(self, sub: Any, x: Any, s: dict[str, Any]) -> bool:
        if "prefixItems" in s:
            raise _Unsure("prefixItems")
        return not isinstance(x, list) or all(self.ok(sub, item) for item in x)

    def _min_items(self, n: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not isinstance(x, list) or len(x) >= n

    def _unique_items(self, unique: Any, x: Any, _s: dict[str, Any]) -> bool:
        if not unique or not isinstance(x, list):
            return True
        return not any(_equal(x[i], x[j]) for i in range(len(x)) for j in range(i + 1, len(x)))

    def _min_length(self, n: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not isinstance(x, str) or len(x) >= n

    def _min_properties(self, n: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not isinstance(x, dict) or len(x) >= n

    def _max_properties(self, n: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not isinstance(x, dict) or len(x) <= n

    def _property_names(self, sub: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not isinstance(x, dict) or all(self.ok(sub, k) for k in x)

    def _if(self, cond: Any, x: Any, s: dict[str, Any]) -> bool:
        branch = "then" if self.ok(cond, x) else "else"
        return branch not in s or self.ok(s[branch], x)

    def _not(self, sub: Any, x: Any, _s: dict[str, Any]) -> bool:
        return not self.ok(sub, x)

    def _all_of(self, subs: Any, x: Any, _s: dict[str, Any]) -> bool:
        return all(self.ok(sub, x) for sub in subs)

    def _any_of(self, subs: Any, x: Any, _s: dict[str, Any]) -> bool:
        return any(self.ok(sub, x) for sub in subs)


def _skip(_v: Any, _x: Any, _s: dict[str, Any]) -> bool:
    """`then` and `else` are applied by `if`; alone they do nothing."""
    return True
