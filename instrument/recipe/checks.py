"""Semantic recipe checks the schema cannot express, output-path safety, and --set parameters."""

from __future__ import annotations

import re
from pathlib import Path as FsPath
from typing import Any, Iterator, Mapping, Sequence

from ..errors import RecipeError, RecipeErrors
from ..arch.x86_64 import DEBUG_SLOTS, is_register, watch_aligned
from .globs import is_pattern
from .model import Action, Breakpoint, Param, Path, Recipe

ARG_NAMES = frozenset(f"arg{i}" for i in range(6))
# Names an expression already gives a meaning to: a param with one of these
# names could never be read.
RESERVED_PARAM_NAMES = frozenset({"retval", "hits"}) | ARG_NAMES
HARDWARE_SLOTS = DEBUG_SLOTS   # x86 has four address debug registers, DR0-DR3

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT_LITERAL = re.compile(r"\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def is_reserved_param_name(name: str) -> bool:
    """True for register names, arg0..arg5, retval and hits."""
    return name in RESERVED_PARAM_NAMES or is_register(name)


def check_recipe(recipe: Recipe, data: Mapping[str, Any]) -> list[RecipeError]:
    """Every semantic error in `recipe` (built from the schema-valid `data`), in file order."""
    errors: list[RecipeError] = []
    errors += _check_ids(recipe)
    errors += _check_references(recipe)
    errors += _check_hardware(recipe)
    errors += _check_breakpoint_options(recipe, data)
    errors += _check_params(recipe)
    errors += _check_target_fields(recipe)
    errors += _check_action_args(recipe)
    errors += _check_one_backtrace(recipe)
    errors += _check_patterns(recipe)
    return sorted(errors, key=_order)


def _order(e: RecipeError) -> tuple[int, int]:
    return (e.location.line, e.location.col) if e.location else (0, 0)


def action_lists(recipe: Recipe) -> Iterator[Sequence[Action]]:
    """Each list of actions that runs on one stop: a breakpoint's, its on_return, each
    event's, crash's."""
    for bp in recipe.breakpoints:
        yield bp.actions
        if bp.on_return:
            yield bp.on_return
    yield from recipe.events.values()
    yield recipe.crash
    for handler in recipe.signals:
        yield handler.actions
    for call in recipe.syscalls:
        yield call.actions


def all_actions(recipe: Recipe) -> Iterator[Action]:
    """Every action in the recipe: breakpoints' (and their on_return), events', crash's, signals'."""
    for actions in action_lists(recipe):
        yield from actions


def _check_one_backtrace(recipe: Recipe) -> list[RecipeError]:
    """A stop has one stack: a second backtrace would overwrite the record's `frames`."""
    errors = []
    for actions in action_lists(recipe):
        backtraces = [a for a in actions if a.kind == "backtrace"]
        for extra in backtraces[1:]:
            errors.append(RecipeError("one backtrace per stop: its frames are the record's `frames` "
                                      "(give the deeper depth once)", recipe.where(extra.path + (extra.kind,))))
    return errors


# -- breakpoints ----------------------------------------------------------

def _check_ids(recipe: Recipe) -> list[RecipeError]:
    seen: dict[str, Breakpoint] = {}
    errors = []
    for bp in recipe.breakpoints:
        if bp.id in seen:
            first = recipe.where(seen[bp.id].path)
            errors.append(RecipeError(f"duplicate breakpoint id '{bp.id}' (first used at line {first.line})",
                                      recipe.where(bp.path + ("id",))))
        else:
            seen[bp.id] = bp
    return errors


def _check_references(recipe: Recipe) -> list[RecipeError]:
    ids = list(dict.fromkeys(bp.id for bp in recipe.breakpoints))   # in order, a duplicate once
    errors = []
    for action in all_actions(recipe):
        if action.kind in ("enable", "disable") and action.args not in ids:
            known = ", ".join(ids) or "none"
            errors.append(RecipeError(f"{action.kind}: no breakpoint has id '{action.args}' (ids: {known})",
                                      recipe.where(action.path + (action.kind,))))
    return errors


def _literal_address(at: str | int) -> int | None:
    if isinstance(at, int):
        return at
    m = _INT_LITERAL.fullmatch(at)
    if not m:
        return None
    text = m.group(1)
    return int(text, 16) if text[:2].lower() == "0x" else int(text, 10)


def _check_hardware(recipe: Recipe) -> list[RecipeError]:
    errors = []
    hardware = [bp for bp in recipe.breakpoints if bp.type == "hardware"]
    for n, bp in enumerate(hardware[HARDWARE_SLOTS:], start=HARDWARE_SLOTS + 1):
        errors.append(RecipeError(
            f"breakpoint '{bp.id}' is hardware breakpoint number {n}, but x86 has only "
            f"{HARDWARE_SLOTS} debug registers (DR0-DR3)", recipe.where(bp.path + ("type",))))
    for bp in hardware:
        size = bp.effective_size
        if bp.effective_access == "execute":
            # The SDM requires LEN=00 (1 byte) in DR7 for instruction
            # breakpoints; any other length is undefined behaviour.
            if size != 1:
                errors.append(RecipeError(
                    f"a hardware execute breakpoint watches 1 byte, not {size} (x86 needs LEN=00 for execute)",
                    recipe.where(bp.path + ("size",))))
            continue
        address = _literal_address(bp.at)
        # The CPU ignores the low bits of DRn under the LEN mask, so a
        # misaligned watch would silently cover a different range.
        if address is not None and not watch_aligned(address, size):
            errors.append(RecipeError(
                f"hardware watch of {size} bytes at {address:#x} is not aligned: the address must be "
                f"a multiple of {size}", recipe.where(bp.path + ("at",))))
    return errors


def _check_breakpoint_options(recipe: Recipe, data: Mapping[str, Any]) -> list[RecipeError]:
    errors = []
    raw_list = data.get("breakpoints") or []
    for bp, raw in zip(recipe.breakpoints, raw_list):
        if "once" in raw and "limit" in raw:
            errors.append(RecipeError("give either 'once: true' or 'limit: N', not both",
                                      recipe.where(bp.path + ("once",), key=True)))
        if bp.on_return is not None and bp.effective_access not in (None, "execute"):
            what = "memory" if bp.type == "memory" else f"hardware {bp.effective_access}"
            errors.append(RecipeError(
                f"'on_return' needs a call to return from: only soft and hardware execute breakpoints "
                f"have it, not a {what} breakpoint", recipe.where(bp.path + ("on_return",), key=True)))
    return errors


def _check_patterns(recipe: Recipe) -> list[RecipeError]:
    """A symbol pattern names functions: it takes code breakpoints only, and only it takes max_matches."""
    errors = []
    for bp in recipe.breakpoints:
        pattern = is_pattern(bp.at)
        if pattern and bp.effective_access not in (None, "execute"):
            what = "memory" if bp.type == "memory" else f"hardware {bp.effective_access}"
            errors.append(RecipeError(
                f"a symbol pattern ('{bp.at}') names functions, to break where they start: it cannot be "
                f"a {what} breakpoint, which watches data", recipe.where(bp.path + ("at",))))
        if bp.max_matches is not None and not pattern and not (isinstance(bp.at, str) and "{" in bp.at):
            errors.append(RecipeError(
                f"'max_matches' applies to a symbol pattern (an `at:` with * or ?), not to '{bp.at}'",
                recipe.where(bp.path + ("max_matches",), key=True)))
    return errors


# -- params and target strings --------------------------------------------

def type_of_value(value: Any) -> str:
    """The param type a YAML scalar has: bool, int, float or str."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _default_fits(param: Param) -> bool:
    actual = type_of_value(param.default)
    return actual == param.type or (param.type == "float" and actual == "int")


def _check_params(recipe: Recipe) -> list[RecipeError]:
    errors = []
    for param in recipe.params:
        if is_reserved_param_name(param.name):
            errors.append(RecipeError(
                f"param name '{param.name}' is reserved (registers, arg0..arg5, retval and hits "
                "already mean something in expressions)", recipe.where(param.path, key=True)))
        if not param.required and not _default_fits(param):
            hint = f" (quote it: \"{param.default}\")" if param.type == "str" else ""
            errors.append(RecipeError(
                f"param '{param.name}' is {_a(param.type)}, but its default is "
                f"{type_of_value(param.default)} {param.default!r}{hint}", recipe.where(param.path + ("default",))))
    return errors


def _a(type_name: str) -> str:
    return f"an {type_name}" if type_name == "int" else f"a {type_name}"


def _target_strings(recipe: Recipe) -> Iterator[tuple[str, Path]]:
    target = recipe.target
    if target is None:
        return
    for i, arg in enumerate(target.run or ()):
        yield arg, ("target", "run", i)
    for name, value in target.env.items():
        yield value, ("target", "env", name)
    for key in ("cwd", "stdin", "attach"):
        value = getattr(target, key)
        if isinstance(value, str):
            yield value, ("target", key)


def _check_target_fields(recipe: Recipe) -> list[RecipeError]:
    declared = {p.name for p in recipe.params}
    errors = []
    for text, path in _target_strings(recipe):
        base = recipe.where(path)
        try:
            fields = template_fields(text)
        except TemplateError as e:
            errors.append(RecipeError(str(e), base.shifted(e.column)))
            continue
        for name, column in fields:
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                errors.append(RecipeError(f"unknown param '{name}' in {{{name}}} (declared params: {known})",
                                          base.shifted(column)))
    return errors


# -- action arguments -----------------------------------------------------

def _check_action_args(recipe: Recipe) -> list[RecipeError]:
    errors = []
    for action in all_actions(recipe):
        where = action.path + (action.kind,)
        if action.kind == "set" and action.path[:1] != ("syscalls",):   # there: arguments by name too
            for name in action.args:
                if not (is_register(name) or name in ARG_NAMES or name == "retval"):
                    errors.append(RecipeError(f"set: '{name}' is not a register (nor arg0..arg5, retval)",
                                              recipe.where(where + (name,), key=True)))
        elif action.kind == "log" and isinstance(action.args, dict):
            names = action.args.get("registers")
            for i, name in enumerate(names if isinstance(names, list) else []):
                if not is_register(name):
                    errors.append(RecipeError(f"log: '{name}' is not a register",
                                              recipe.where(where + ("registers", i))))
        elif action.kind == "dump" and "file" in action.args:
            problem = output_name_problem(action.args["file"])
            if problem:
                errors.append(RecipeError(f"dump file {action.args['file']!r} {problem}",
                                          recipe.where(where + ("file",))))
    return errors


def output_name_problem(name: str) -> str | None:
    """Why `name` may not name a file under the output folder, or None if it may."""
    if not name:
        return "is empty"
    if "\0" in name:
        return "contains a NUL byte"
    # A backslash is a separator on Windows and a legal file-name character
    # on Linux: refuse it so a recipe means the same file everywhere.
    if "\\" in name:
        return "contains a backslash (use '/' between folders)"
    if name.startswith(("/", "~")) or re.match(r"[A-Za-z]:", name):
        return "must be relative to the output folder, not absolute"
    if ".." in name.split("/"):
        return "must stay inside the output folder (no '..')"
    if name.endswith("/"):
        return "names a folder, not a file"
    return None


def resolve_output_path(out_dir: str | FsPath, name: str) -> FsPath:
    """The absolute path of output file `name` under `out_dir`; raises RecipeError if it
    would land anywhere else, symlinks included."""
    problem = output_name_problem(name)
    if problem:
        raise RecipeError(f"output file {name!r} {problem}")
    base = FsPath(out_dir).resolve()
    # resolve() follows symlinks that already exist, so a link planted
    # inside out_dir that points outside it is caught here too.
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise RecipeError(f"output file {name!r} resolves to {path}, outside the output folder {base}")
    return path


# -- {param} fields and --set ---------------------------------------------

class TemplateError(ValueError):
    """A malformed `{param}` field; `column` is 0-based within the text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


def _scan(text: str) -> Iterator[tuple[bool, str, int]]:
    """(is_field, literal text or param name, 0-based column) pieces of `text`."""
    i = 0
    literal: list[str] = []
    while i < len(text):
        c = text[i]
        if c in "{}" and text.startswith(c * 2, i):
            literal.append(c)
            i += 2
        elif c == "}":
            raise TemplateError("single '}' in a target string (write '}}' for a literal brace)", i)
        elif c == "{":
            end = text.find("}", i)
            name = text[i + 1:end] if end >= 0 else ""
            if end < 0 or not _IDENT.fullmatch(name):
                raise TemplateError(f"bad param field at {text[i:i + 12]!r}: write {{name}} "
                                    "(or '{{' for a literal brace)", i)
            if literal:
                yield False, "".join(literal), i
                literal = []
            yield True, name, i
            i = end + 1
        else:
            literal.append(c)
            i += 1
    if literal:
        yield False, "".join(literal), len(text)


def template_fields(text: str) -> list[tuple[str, int]]:
    """The `{name}` fields of a target string as (name, 0-based column); raises TemplateError."""
    return [(piece, col) for is_field, piece, col in _scan(text) if is_field]


def format_param(value: Any) -> str:
    """A param value as it appears in argv, env or a path."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute(text: str, values: Mapping[str, Any]) -> str:
    """`text` with each `{name}` replaced by its param value; '{{' and '}}' are literal braces."""
    out = []
    try:
        for is_field, piece, _ in _scan(text):
            if is_field and piece not in values:
                raise RecipeError(f"unknown param '{piece}' in {text!r}")
            out.append(format_param(values[piece]) if is_field else piece)
    except TemplateError as e:
        raise RecipeError(str(e)) from None
    return "".join(out)


def convert_param(param: Param, text: str) -> Any:
    """`text` (from --set) as a value of the param's type; raises ValueError."""
    if param.type == "int":
        t = text.strip()
        # int(t, 0) rejects "010"; decimal first keeps leading zeros working.
        return int(t, 10) if re.fullmatch(r"[+-]?[0-9]+", t) else int(t, 0)
    if param.type == "float":
        return float(text)
    if param.type == "bool":
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(text)
    return text


PLACEHOLDERS = {"int": 0, "float": 0.0, "str": "", "bool": False}


def apply_params(recipe: Recipe, overrides: Mapping[str, str], *, require_all: bool = True) -> dict[str, Any]:
    """Typed param values: the defaults, overridden by --set NAME=VALUE; raises RecipeErrors.

    require_all=False (validate, explain: nothing runs) gives a required param
    left unset its type's zero value instead of an error."""
    params = {p.name: p for p in recipe.params}
    errors: list[RecipeError] = []
    values: dict[str, Any] = {p.name: _typed_default(p) for p in recipe.params if not p.required}
    for name, text in overrides.items():
        param = params.get(name)
        if param is None:
            known = ", ".join(params) or "none"
            errors.append(RecipeError(f"--set {name}={text}: the recipe has no param '{name}' (params: {known})"))
            continue
        try:
            values[name] = convert_param(param, text)
        except ValueError:
            accepted = " (true/false, yes/no, 1/0)" if param.type == "bool" else ""
            errors.append(RecipeError(f"--set {name}={text}: param '{name}' is {_a(param.type)}{accepted}"))
    for param in recipe.params:
        if param.name not in values and param.name not in overrides and not require_all:
            values[param.name] = PLACEHOLDERS[param.type]
        elif param.name not in values and param.name not in overrides:
            errors.append(RecipeError(f"param '{param.name}' has no default: pass --set {param.name}=VALUE",
                                      recipe.where(param.path, key=True)))
    if errors:
        raise RecipeErrors(errors)
    return values


def _typed_default(param: Param) -> Any:
    if param.type == "float" and isinstance(param.default, int) and not isinstance(param.default, bool):
        return float(param.default)
    return param.default


__all__ = [
    "ARG_NAMES", "RESERVED_PARAM_NAMES", "HARDWARE_SLOTS", "TemplateError", "all_actions",
    "apply_params", "check_recipe", "type_of_value", "convert_param", "format_param", "is_reserved_param_name",
    "output_name_problem", "resolve_output_path", "substitute", "template_fields",
]
