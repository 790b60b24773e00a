"""Load a recipe: read, parse, schema-validate, build the frozen model, run the semantic checks."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path as FsPath
from typing import Any, Mapping

from ..errors import RecipeError, RecipeErrors
from .checks import check_recipe, type_of_value
from .model import Action, Breakpoint, Param, Path, Recipe, SignalHandler, SyscallHandler, Target
from .salvage import salvage
from .schema import validate_source, validator
from .source import Source, parse_source

BACKTRACE_DEPTH = 32
DISASSEMBLE_COUNT = 8


def load_recipe(path_or_text: str | os.PathLike[str], *, file: str | None = None) -> Recipe:
    """Load a recipe from a path, or from YAML text (a str containing a newline).

    Raises RecipeErrors holding every error found, sorted by line: a YAML error
    alone; otherwise every schema and semantic error (see salvage_recipe).
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
    recipe, errors = salvage_recipe_text(text, file)
    if errors or recipe is None:
        raise RecipeErrors(errors)
    return recipe


def salvage_recipe(path_or_text: str | os.PathLike[str], *, file: str | None = None
                   ) -> tuple[Recipe | None, list[RecipeError]]:
    """Like load_recipe, but returning instead of raising: every error found, sorted by
    line, and the model of what is left once the schema-invalid parts are cut out
    (recipe/salvage.py), for the compiler to check further. The model is None when
    nothing can be built (a YAML syntax error, an unreadable file)."""
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return salvage_recipe_text(path_or_text, file or "<recipe>")
    path = os.fspath(path_or_text)
    try:
        text = read_recipe_text(path)
    except RecipeErrors as e:
        return None, list(e.errors)
    return salvage_recipe_text(text, file or path)


def salvage_recipe_text(text: str, file: str = "<recipe>") -> tuple[Recipe | None, list[RecipeError]]:
    """salvage_recipe of YAML text."""
    try:
        source = parse_source(text, file)
    except RecipeErrors as e:
        return None, list(e.errors)
    errors: list[RecipeError] = list(validate_source(source))
    if errors:
        data = salvage(source.data, validator())
        if data is None:
            return None, errors
        source = replace(source, data=data)
    recipe = build_recipe(source)
    errors = merge_errors(errors, check_recipe(recipe, source.data))
    return recipe, errors


def merge_errors(first: list[RecipeError], later: list[RecipeError], *, same_line: bool = False) -> list[RecipeError]:
    """`first` and `later` in file order; a later error at the place of an earlier one
    (`same_line`: on its line) is left out: the earlier stage's error explains it (a value
    cut out of a schema-invalid recipe may leave a consequence behind; the compiler
    refuses again what a semantic check refused)."""
    def key(e: RecipeError) -> tuple[int, ...]:
        return _place(e)[:1] if same_line else _place(e)

    places = {key(e) for e in first if e.location is not None and e.location.line}
    seen: set[str] = set()
    out = []
    for e in [*first, *(e for e in later if key(e) not in places)]:
        if str(e) not in seen:
            seen.add(str(e))
            out.append(e)
    return sorted(out, key=_place)


def _place(e: RecipeError) -> tuple[int, int]:
    return (e.location.line, e.location.col) if e.location is not None else (0, 0)


def default_name(file: str) -> str:
    """A recipe without `name:` is called after its file: `heap.yaml` -> `heap`."""
    if file.startswith("<"):
        return file.strip("<>") or "recipe"
    return FsPath(file).stem or "recipe"


def build_recipe(source: Source) -> Recipe:
    """The frozen model of schema-valid `source` (no semantic checks)."""
    data = source.data
    events = data.get("events") or {}
    raw_breakpoints = data.get("breakpoints") or ()
    ids = _breakpoint_ids(raw_breakpoints)
    return Recipe(
        version=data["version"],
        name=data.get("name") or default_name(source.file),
        description=data.get("description"),
        author=data.get("author"),
        tags=tuple(data.get("tags") or ()),
        requires=dict(data.get("requires") or {}),
        params=tuple(_param(name, raw) for name, raw in (data.get("params") or {}).items()),
        target=_target(data["target"]) if "target" in data else None,
        breakpoints=tuple(_breakpoint(i, raw, ids[i]) for i, raw in enumerate(raw_breakpoints)),
        events={name: _actions(items, ("events", name)) for name, items in events.items()},
        events_paths={name: ("events", name) for name in events},
        crash=_actions(data.get("crash") or (), ("crash",)),
        signals=tuple(_signal_handler(key, raw) for key, raw in (data.get("signals") or {}).items()),
        rules=tuple(data.get("rules") or ()),
        syscalls=tuple(_syscall(key, raw) for key, raw in (data.get("syscalls") or {}).items()),
        file=source.file,
        text=source.text,
        sha256=hashlib.sha256(source.text.encode("utf-8")).hexdigest(),
        positions=source.positions,
        key_positions=source.key_positions,
    )


def at_text(at: str | int) -> str:
    """An `at:` value as the id it gives a breakpoint without one: the text, an integer in hex."""
    return hex(at) if isinstance(at, int) else str(at).strip()


def _breakpoint_ids(raws: Any) -> list[str]:
    """Each breakpoint's id: its own, or its `at:` text; a repeated `at:` text gets `#2`, `#3`
    (two breakpoints on one place, with different conditions, need no ids to be told apart)."""
    given = {raw["id"] for raw in raws if isinstance(raw.get("id"), str)}
    taken: set[str] = set()
    ids = []
    for raw in raws:
        if isinstance(raw.get("id"), str):
            ids.append(raw["id"])
            continue
        base = at_text(raw["at"])
        bp_id, n = base, 1
        while bp_id in given or bp_id in taken:
            n += 1
            bp_id = f"{base}#{n}"
        taken.add(bp_id)
        ids.append(bp_id)
    return ids


def _signal_handler(key: Any, raw: Any) -> SignalHandler:
    """A `signals:` entry: a disposition alone (`SIGPIPE: suppress`), a list of actions, or
    the mapping with disposition, when, limit and actions."""
    path = ("signals", key)
    if isinstance(raw, str):
        return SignalHandler(key, raw, path=path)
    if isinstance(raw, list):
        return SignalHandler(key, actions=_actions(raw, path), path=path)
    raw = raw or {}
    return SignalHandler(key, raw.get("disposition", "pass"), raw.get("when"), raw.get("limit"),
                         _actions(raw.get("actions") or (), path + ("actions",)), path)


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
    timeout: Any = raw.get("timeout")
    return Target(
        run=tuple(_text(a) for a in run) if run is not None else None,
        attach=raw.get("attach"),
        env={k: _text(v) for k, v in (raw.get("env") or {}).items()},
        cwd=raw.get("cwd"),
        stdin=raw.get("stdin"),
        timeout=float(timeout) if timeout is not None else None,
        follow_forks=bool(raw.get("follow_forks", False)),
    )


def _breakpoint(index: int, raw: Mapping[str, Any], bp_id: str) -> Breakpoint:
    path: Path = ("breakpoints", index)
    limit = raw.get("limit")
    if limit is None and raw.get("once"):
        limit = 1
    on_return = raw.get("on_return")
    return Breakpoint(
        id=bp_id,
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
        id_given="id" in raw,
        max_matches=raw.get("max_matches"),
    )


def _syscall(key: Any, raw: Mapping[str, Any]) -> SyscallHandler:
    path: Path = ("syscalls", key)
    return SyscallHandler(key=str(key), on=raw.get("on", "both"), when=raw.get("when"), limit=raw.get("limit"),
                          actions=_actions(raw.get("actions") or (), path + ("actions",)), path=path)


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
