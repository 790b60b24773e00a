"""What an action needs from the engine at run time, and what a compiled action is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, MutableMapping, Protocol

from ..errors import ExpressionError, Location, RecipeError
from ..expr import Env, Expr, Format, parse, parse_format
from ..recipe.model import Action, Path as DocPath, Recipe


# What expressions may name besides registers, args, params and symbols: the fields
# of the event or hit being handled (instrument/engine/records.py, hits.py).
EVENT_FIELDS = frozenset({
    "event", "code", "pid", "tid", "time", "address", "pc", "access", "module", "base",
    "image_path", "start_address", "exit_code", "signal", "text", "error", "exception",
    "exception_code", "fault_address", "first_chance", "symbol", "instruction", "check",
    "signo", "si_code", "si_pid", "si_uid", "si_value", "disposition",      # signals:
})


class ActionContext(Protocol):
    """The engine's view of one stop, handed to every action of a handler."""

    record: dict[str, Any]                  # the record being built; actions merge fields into it
    regs: MutableMapping[str, int]          # the stopped thread's registers (writes go back on resume)
    @property
    def env(self) -> Env:                   # for evaluating expressions
        ...


    def read_memory(self, address: int, size: int) -> bytes: ...
    def write_memory(self, address: int, data: bytes) -> None: ...
    def write_arg(self, index: int, value: int) -> None: ...
    def backtrace(self, depth: int) -> list[dict[str, Any]]: ...
    def scope_names(self, params: bool) -> list[str]: ...   # DWARF parameters / locals at the pc
    def disassemble(self, address: int | None, count: int) -> list[dict[str, Any]]: ...
    def set_enabled(self, breakpoint_id: str, enabled: bool) -> None: ...
    def end_session(self, how: str) -> None: ...          # "detach" | "kill" | "stop"
    def force_return(self, value: int) -> None: ...
    def output_path(self, name: str) -> Path: ...


Run = Callable[[ActionContext], None]


@dataclass(frozen=True)
class CompiledAction:
    """An action compiled once into a closure; `describe` is what `explain` prints."""

    kind: str
    describe: str
    run: Run
    # What it reads of the stopped thread when that is registers alone and it changes
    # nothing, so it can run on a snapshot of them (a sampled hardware hit); None:
    # it needs the thread stopped. See expr.Expr.reads.
    reads: frozenset[str] | None = None


@dataclass(frozen=True)
class CompileContext:
    """What compiling an action may consult: the recipe (for error locations) and params."""

    recipe: Recipe
    params: dict[str, Any]
    breakpoint_ids: frozenset[str]
    symbols: Any = None          # compiler.resolve.StaticSymbols of the program, when known
    # Filled while compiling: non-empty when some expression or action names DWARF
    # variables, so names are looked up in the stopped frame's debug information
    # before the symbol tables (Plan.variables). A recipe that names none reads no DWARF.
    dwarf_uses: set[str] = dataclasses.field(default_factory=set)
    # Names a section's stops have besides EVENT_FIELDS (a system call's arguments by name).
    extra_names: frozenset[str] = frozenset()

    def uses_variables(self, why: str) -> None:
        self.dwarf_uses.add(why)

    def where(self, path: DocPath) -> Location:
        return self.recipe.where(path)

    def expr(self, value: Any, path: DocPath, *, check_names: bool = True) -> Expr:
        """Parse an expression, pointing a syntax error at its column in the file."""
        try:
            parsed = parse(value)
        except ExpressionError as e:
            raise ExpressionError(_keyed(e.message, path), e.column, self.where(path).shifted(e.column)) from None
        if check_names and self.check_names(parsed.names, value, path):
            parsed = dataclasses.replace(parsed, reads=None)
        if parsed.typed:
            self.uses_variables(parsed.text)
        return parsed

    def format(self, text: str, path: DocPath) -> Format:
        try:
            parsed = parse_format(text)
        except ExpressionError as e:
            raise ExpressionError(_keyed(e.message, path), e.column, self.where(path).shifted(e.column)) from None
        if self.check_names(parsed.names, text, path):
            parsed = dataclasses.replace(parsed, stopped=True)
        if any(f.typed for f in parsed.fields):
            self.uses_variables(text)
        return parsed

    def check_names(self, names: frozenset[str], text: Any, path: DocPath) -> bool:
        """Names in run-time expressions are params, event fields, symbols or DWARF
        variables. With the program on disk, a name that is none of them (a typo: `arg`
        for `arg0`) is an error here rather than a condition that fails on every hit.
        True when some name is a variable: reading it needs the thread stopped."""
        if self.symbols is None or self.symbols.resolver is None:
            return False
        variables = False
        for name in sorted(names):
            if name in self.params or name in EVENT_FIELDS or name in self.extra_names \
                    or "!" in name or name.count(":") == 1:
                continue
            if self.symbols.knows(name, variables=False):
                continue
            if self.symbols.is_variable(name):
                variables = True
                self.uses_variables(name)
                continue
            column = str(text).find(name)
            raise ExpressionError(
                f"unknown name '{name}': not a param, an event field, a symbol or a variable of {self.symbols.program}",
                max(column, 0), self.where(path).shifted(max(column, 0)))
        return variables


def _keyed(message: str, path: DocPath) -> str:
    """A syntax error named after the key it is in (`when: unexpected end of expression`):
    a line may hold several expressions, and the column alone is easy to misread."""
    key = next((p for p in reversed(path) if isinstance(p, str)), None)
    return f"{key}: {message}" if key else message


def error(message: str, ctx: CompileContext, path: DocPath) -> RecipeError:
    return RecipeError(message, ctx.where(path))


def action_path(action: Action, *more: Any) -> DocPath:
    return tuple(action.path) + (action.kind,) + more
