"""Load a recipe: read, parse, schema-validate, build the frozen model, run the semantic checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path as FsPath
from typing import Any, Mapping

from ..errors import RecipeError, RecipeErrors
from .checks import check_recipe, type_of_value
from .model import Action, Breakpoint, Param, Path, Recipe, Target
from .schema import validate_source
from .source import Source, parse_source

BACKTRACE_DEPTH = 32
DISASSEMBLE_COUNT = 8


def load_recipe(path_or_text: str | os.PathLike[str], *, file: str | None = None) -> Recipe:
    """Load a recipe from a path, or from YAML text (a str containing a newline).

    Raises RecipeErrors holding every error found: a YAML or schema error
    stops before the model is built; otherwise all semantic errors come back.
    """
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return load_recipe_text(path_or_text, file or "<recipe>")
    path = os.fspath(path_or_text)
    return load_recipe_text(read_recipe_text(path), file or path)


def read_recipe_text(path: str) -> str:
    """The exact text of a recipe file (newlines untranslated); raises RecipeErrors."""
    try:
        raw = FsPath(path).read_bytes()
    except OSError as e:
        raise RecipeErrors([RecipeError(f"cannot read recipe: {e.strerror or e}: {path}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeErrors([RecipeError(
            f"cannot read recipe: {path} is not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})")]) from None


def load_recipe_text(text: str, file: str = "<recipe>") -> Recipe:
    """Load a recipe from YAML text; `file` is what error messages call it."""
    source = parse_source(text, file)
    schema_errors = validate_source(source)
    if schema_errors:
        raise RecipeErrors(list(schema_errors))
    recipe = build_recipe(source)
    errors = check_recipe(recipe, source.data)
    if errors:
        raise RecipeErrors(errors)
    return recipe


def build_recipe(source: Source) -> Recipe:
    """The frozen model of schema-valid `source` (no semantic checks)."""
    data = source.data
    events = data.get("events") or {}
    return Recipe(
        version=data["version"],
        name=data["name"],
        description=data.get("description"),
        author=data.get("author"),
        tags=tuple(data.get("tags") or ()),
        requires=dict(data.get("requires") or {}),
        params=tuple(_param(name, raw) for name, raw in (data.get("params") or {}).items()),
        target=_target(data["target"]) if "target" in data else None,
        breakpoints=tuple(_breakpoint(i, raw) for i, raw in enumerate(data.get("breakpoints") or ())),
        events={name: _actions(items, ("events", name)) for name, items in events.items()},
        events_paths={name: ("events", name) for name in events},
        crash=_actions(data.get("crash") or (), ("crash",)),
        rules=tuple(data.get("rules") or ()),
        file=source.file,
        text=source.text,
        sha256=hashlib.sha256(source.text.encode("utf-8")).hexdigest(),
        positions=source.positions,
        key_positions=source.key_positions,
    )


def _param(name: str, raw: Any) -> Param:
    path = ("params", name)
    if not isinstance(raw, Mapping):
        return Param(name, type_of_value(raw), raw, False, None, path)
    has_default = "default" in raw
    default: Any = raw.get("default")
    declared = raw.get("type") or type_of_value(default)
    if declared == "float" and type_of_value(default) == "int":
        default = float(default)
    return Param(name, declared, default, not has_default, raw.get("description"), path)


def _text(value: Any) -> str:
    """A YAML scalar as the string a command line or environment gets."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _target(raw: Mapping[str, Any]) -> Target:
    run = raw.get("run")
    timeout = raw.get("timeout")
    return Target(
        run=tuple(_text(a) for a in run) if run is not None else None,
        attach=raw.get("attach"),
        env={k: _text(v) for k, v in (raw.get("env") or {}).items()},
        cwd=raw.get("cwd"),
        stdin=raw.get("stdin"),
        timeout=float(timeout) if timeout is not None else None,
        follow_forks=bool(raw.get("follow_forks", False)),
    )


def _breakpoint(index: int, raw: Mapping[str, Any]) -> Breakpoint:
    path: Path = ("breakpoints", index)
    limit = raw.get("limit")
    if limit is None and raw.get("once"):
        limit = 1
    on_return = raw.get("on_return")
    return Breakpoint(
        id=raw.get("id") or f"bp{index + 1}",
        at=raw["at"],
        type=raw.get("type", "soft"),
        access=raw.get("access"),
        size=raw.get("size"),
        when=raw.get("when"),
        limit=limit,
        enabled=raw.get("enabled", True),
        actions=_actions(raw.get("actions") or (), path + ("actions",)),
        on_return=_actions(on_return, path + ("on_return",)) if on_return is not None else None,
        path=path,
    )


def _actions(items: Any, path: Path) -> tuple[Action, ...]:
    return tuple(_action(item, path + (i,)) for i, item in enumerate(items))


def _action(item: Any, path: Path) -> Action:
    if isinstance(item, str):
        kind, args = item, None
    else:
        ((kind, args),) = item.items()
    # Fill the documented defaults here, once, so action code never has to
    # tell `backtrace` from `backtrace: {}` from `backtrace: {depth: 32}`.
    if kind == "backtrace":
        args = {"depth": BACKTRACE_DEPTH, **(args or {})}
    elif kind == "disassemble":
        args = {"count": DISASSEMBLE_COUNT, **(args or {})}
    return Action(kind, args, path)
