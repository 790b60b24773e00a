"""`instrument trace`: the recipe a one-line trace command stands for, as YAML text.

The command builds this text and then runs it exactly as `instrument run` runs
a file (same loader, compiler, engine, records), so `--save FILE` can write the
very recipe that ran: running that file gives the same records.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import Location, RecipeError, RecipeErrors, UsageError
from .globs import is_pattern
from .source import parse_source

TRACE_FILE = "<trace>"        # what a recipe that was never saved is called (its name: `trace`)
DEFAULT_ARGS = 3
DEFAULT_BACKTRACE = 16
# `-i 'openat: {str(rsi)} flags={rdx:#x}'`: what to log follows the first ': '. A colon
# without the space belongs to the place (`ns::f`, `loop.c:42`).
_FORMAT_SPLIT = re.compile(r":\s+")


@dataclass(frozen=True)
class TraceOptions:
    """The flags of one `instrument trace` command."""

    specs: tuple[str, ...]                # -i: a place or pattern, optionally ': FORMAT'
    syscalls: tuple[str, ...] = ()        # -s: a system call name, number or glob, optionally ': FORMAT'
    command: tuple[str, ...] = ()         # after `--`
    pid: int | None = None
    args: int = DEFAULT_ARGS              # arguments each hit logs (without a FORMAT)
    ret: bool = False                     # a `return` record per call, with retval
    backtrace: int | None = None          # frames per hit
    limit: int | None = None              # hits per function
    hardware: bool = False
    follow_forks: bool = False
    max_matches: int | None = None
    timeout: float | None = None

    def command_line(self) -> str:
        """The trace command these options are, spelt canonically (the recipe's description)."""
        words = ["instrument", "trace"]
        for spec in self.specs:
            words += ["-i", spec]
        for spec in self.syscalls:
            words += ["-s", spec]
        if self.args != DEFAULT_ARGS:
            words += ["--args", str(self.args)]
        words += ["--ret"] * self.ret + ["--hardware"] * self.hardware + ["--follow-forks"] * self.follow_forks
        if self.backtrace is not None:
            words += ["--backtrace", str(self.backtrace)]
        for flag, value in (("--limit", self.limit), ("--max-matches", self.max_matches),
                            ("--timeout", self.timeout), ("--pid", self.pid)):
            if value is not None:
                words += [flag, _number(value)]
        if self.command:
            words += ["--", *self.command]
        return shlex.join(words)


def _number(value: float | int) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def split_spec(spec: str) -> tuple[str, str | None]:
    """`'openat: {str(rsi)}'` -> ('openat', '{str(rsi)}'); `'malloc'` -> ('malloc', None)."""
    m = _FORMAT_SPLIT.search(spec)
    if m is None:
        return spec.strip(), None
    return spec[:m.start()].strip(), spec[m.end():]


def args_format(count: int) -> str | None:
    """What a hit logs by default: `arg0=0x.. arg1=0x..` (hex, like every register in a record)."""
    return " ".join(f"arg{i}={{arg{i}:#x}}" for i in range(count)) or None


def recipe_data(options: TraceOptions) -> dict[str, Any]:
    """The recipe as plain data (no `name`: it is the saved file's name, or `trace`)."""
    if not options.specs and not options.syscalls:
        raise UsageError("trace needs at least one -i PLACE (a function, a pattern such as "
                         "'libc.so.6!open*', or an address expression) or -s SYSCALL")
    data: dict[str, Any] = {"version": 1, "description": f"Written by: {options.command_line()}"}
    target: dict[str, Any] = {}
    if options.pid is not None:
        target["attach"] = options.pid
    elif options.command:
        target["run"] = list(options.command)
    if options.timeout is not None:
        target["timeout"] = options.timeout
    if options.follow_forks:
        target["follow_forks"] = True
    if target:
        data["target"] = target
    if options.specs:
        data["breakpoints"] = [_breakpoint(spec, options) for spec in options.specs]
    if options.syscalls:
        data["syscalls"] = dict(_syscall(spec, options) for spec in options.syscalls)
    return data


def _syscall(spec: str, options: TraceOptions) -> tuple[str, dict[str, Any]]:
    """`-s 'write: {count} bytes'` -> ("write", {actions: [log: ...]}): entry and exit records."""
    name, fmt = split_spec(spec)
    if not name:
        raise UsageError(f"-s {spec!r}: name the system call before the ': FORMAT'")
    handler: dict[str, Any] = {"on": "both"}
    if options.limit is not None:
        handler["limit"] = options.limit
    actions: list[Any] = [{"log": fmt}] if fmt else []
    if options.backtrace is not None:
        actions.append({"backtrace": {"depth": options.backtrace}})
    if actions:
        handler["actions"] = actions
    return name, handler


def _breakpoint(spec: str, options: TraceOptions) -> dict[str, Any]:
    at, fmt = split_spec(spec)
    if not at:
        raise UsageError(f"-i {spec!r}: say where to break before the ': FORMAT'")
    bp: dict[str, Any] = {"at": at}
    if options.hardware:
        bp["type"] = "hardware"
    if options.limit is not None:
        bp["limit"] = options.limit
    if options.max_matches is not None and is_pattern(at):
        bp["max_matches"] = options.max_matches
    actions: list[Any] = []
    message = fmt if fmt is not None else args_format(options.args)
    if message:
        actions.append({"log": message})
    if options.backtrace is not None:
        actions.append({"backtrace": {"depth": options.backtrace}})
    if actions:
        bp["actions"] = actions
    if options.ret:
        bp["on_return"] = []          # its `return` record carries retval; nothing more to do
    return bp


@dataclass(frozen=True)
class TraceRecipe:
    """The recipe text of a trace command, and which -i each breakpoint came from."""

    text: str
    specs: tuple[str, ...]
    syscalls: tuple[str, ...] = ()

    def save(self, path: str) -> None:
        try:
            Path(path).write_text(self.text, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write --save {path}: {e.strerror or e}") from None

    def flag_errors(self, errors: RecipeErrors, file: str) -> RecipeErrors:
        """Errors located in the recipe text (called `file`) restated as the -i flag they came
        from: the person typed `-i 'nosuch*'`, not line 9 of a file they never saw."""
        source = parse_source(self.text, file)
        positions, keys = source.positions, source.key_positions
        starts = sorted((positions[("breakpoints", i)].line, f"-i {shlex.quote(spec)}")
                        for i, spec in enumerate(self.specs) if ("breakpoints", i) in positions)
        starts += sorted((keys[("syscalls", split_spec(spec)[0])].line, f"-s {shlex.quote(spec)}")
                         for spec in self.syscalls if ("syscalls", split_spec(spec)[0]) in keys)
        starts.sort()
        out = []
        for e in errors.errors:
            if e.location is None or e.location.file != file or not e.location.line:
                out.append(e)
                continue
            spec = next((s for line, s in reversed(starts) if line <= e.location.line), None)
            where = f"{spec}: " if spec is not None else ""
            out.append(RecipeError(f"{where}{e.message}", Location("instrument trace")))
        return RecipeErrors(out)


def trace_recipe(options: TraceOptions) -> TraceRecipe:
    """The recipe `options` stand for (raises UsageError for flags that make none)."""
    text = yaml.safe_dump(recipe_data(options), sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=100)
    header = ("# yaml-language-server: $schema=https://github.com/instrument-debugger/instrument/"
              "schemas/recipe.schema.json\n# Run it again with: instrument run THIS_FILE\n")
    return TraceRecipe(header + text, options.specs, options.syscalls)
