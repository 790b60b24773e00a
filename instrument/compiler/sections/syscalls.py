"""The `syscalls:` section: handlers by system call name, number or glob, for entry, exit or both.

Each key is resolved against the x86-64 table (arch/x86_64/syscalls.py) and its
actions compiled once for every call it covers, with that call's argument names:
a glob such as `open*` covers calls whose arguments differ (`open` has no dirfd),
so `pathname` means the right register in each. `set:` of an argument by name
becomes `set:` of its argN, which a system call stop writes in the system call ABI.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import TYPE_CHECKING, Any

from ...actions import CompileContext
from ...arch.x86_64 import is_register
from ...errors import RecipeError
from ...recipe.globs import has_glob
from ...recipe.model import Action, Recipe, SyscallHandler as Entry
from ..table import SyscallHandler, TableBuilder, compile_actions

if TYPE_CHECKING:      # the table is imported only for a recipe with `syscalls:` (start-up time)
    from ...arch.x86_64.syscalls import Syscall

# What a system call stop offers expressions besides its arguments by name.
SYSCALL_FIELDS = frozenset({"sysno", "syscall", "phase", "name", "retval", "errno"})
_EXIT_ONLY = frozenset({"retval", "errno"})
_WORDS = re.compile(r"[A-Za-z_]\w*")
_SETTABLE = frozenset({f"arg{i}" for i in range(6)} | {"retval"})


def resolve_key(key: str) -> list[Syscall]:
    """The calls a key names: a number, a name, or a glob over the names (sorted by number)."""
    from ...arch.x86_64.syscalls import BY_NAME, BY_NUMBER

    text = key.strip()
    if text.isdigit():
        call = BY_NUMBER.get(int(text))
        return [call] if call is not None else []
    if has_glob(text) or "[" in text:
        return sorted((c for name, c in BY_NAME.items() if fnmatch.fnmatchcase(name, text)),
                      key=lambda c: c.number)
    call = BY_NAME.get(text)
    return [call] if call is not None else []


def _suggest(key: str) -> str:
    import difflib

    from ...arch.x86_64.syscalls import BY_NAME

    close = difflib.get_close_matches(key, list(BY_NAME), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def compile_syscalls(recipe: Recipe, ctx: CompileContext, table: TableBuilder, errors: list[RecipeError]) -> None:
    for index, entry in enumerate(recipe.syscalls):
        calls = resolve_key(entry.key)
        if not calls:
            what = "no x86-64 system call matches" if has_glob(entry.key) else "unknown x86-64 system call"
            errors.append(RecipeError(f"{what} '{entry.key}'{_suggest(entry.key)}",
                                      recipe.where(entry.path, key=True)))
            continue
        for call in calls:
            handler = _compile_for(entry, call, index, ctx, errors)
            if handler is None:
                break             # said once, not once per call the glob covers
            table.syscalls.setdefault(call.number, []).append(handler)


def _compile_for(entry: Entry, call: Syscall, index: int, ctx: CompileContext,
                 errors: list[RecipeError]) -> SyscallHandler | None:
    names = {a.name: i for i, a in enumerate(call.args)}
    local = dataclasses.replace(ctx, extra_names=ctx.extra_names | SYSCALL_FIELDS | frozenset(names))
    before = len(errors)
    when = None
    if entry.when is not None:
        path = tuple(entry.path) + ("when",)
        try:
            when = local.expr(entry.when, path)
            early = sorted(set(_WORDS.findall(str(entry.when))) & _EXIT_ONLY)   # retval is a builtin name
            if early and entry.on != "exit":
                errors.append(RecipeError(f"when: '{early[0]}' is known only at the call's exit: "
                                          f"give this key `on: exit`", local.where(path)))
        except RecipeError as e:
            errors.append(e)
    for action in entry.actions:
        if action.kind == "set" and isinstance(action.args, dict):
            for name in action.args:
                if name not in names and name not in _SETTABLE and not is_register(name):
                    listed = ", ".join(names) or "none"
                    errors.append(RecipeError(f"set: '{name}' is not an argument of {call.name} ({listed}), "
                                              "a register, arg0..arg5 or retval",
                                              local.recipe.where(tuple(action.path) + ("set", name), key=True)))
    if len(errors) > before:
        return None
    actions = compile_actions([_by_register(a, names) for a in entry.actions], local, errors)
    if len(errors) > before:
        return None
    return SyscallHandler(entry.key, call.number, call.name, entry.on, when, entry.limit, actions, index)


def _by_register(action: Action, names: dict[str, int]) -> Action:
    """`set: {count: 3}` -> `set: {arg2: 3}`: the stop writes argN in the system call ABI."""
    if action.kind != "set" or not isinstance(action.args, dict):
        return action
    args: dict[str, Any] = {(f"arg{names[k]}" if k in names else k): v for k, v in action.args.items()}
    return dataclasses.replace(action, args=args)
