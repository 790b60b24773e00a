"""Symbol patterns in `at:` (`libc.so.6!str*`, `*!malloc`, `hit*`): one breakpoint per function matched.

The compiler takes each pattern breakpoint out of the plan's breakpoints and
keeps it as a `PatternPlan`: the compiled breakpoint every expansion copies
(its actions, condition, limit), checked now against whatever the pattern
names that is on disk (the program, a library found where the loader would
find it): no match, or more than `max_matches`, is an error with its line.

Arming is the engine's, per session: as each module appears (the main image at
CREATE_PROCESS, each library at LOAD_DLL) it asks its `PatternExpander` for
the new breakpoints, one per function of that module the pattern matches,
deduplicated by address (`__libc_malloc` and `malloc` are one). Each is an
ordinary breakpoint from then on: its own id, hit count and limit, so
`limit`/`once` count per function and each hit's `symbol` names it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Container, Sequence

from ..errors import EvaluationError, Location, RecipeError, SymbolError
from ..events import Module
from ..expr import Expr, parse
from ..arch.x86_64 import DEBUG_SLOTS as HARDWARE_SLOTS
from ..recipe.globs import SymbolPattern, parse_pattern
from ..recipe.model import Recipe
from ..symbols.elf import ImageError, needed_libraries
from ..symbols.modules import module_matches, open_module_image
from .functions import function_table, matching, module_glob_matches

DEFAULT_MAX_MATCHES = 1000
# Where the loader finds a library by name when nothing (LD_LIBRARY_PATH, RUNPATH) says
# otherwise, for checking a pattern over it before the program runs (Debian/Ubuntu and
# Fedora layouts). Not finding it is no error: the pattern is then checked when it loads.
LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib", "/usr/local/lib")


@dataclass(frozen=True)
class Expansion:
    """One function a pattern matched in one module."""

    id: str              # the breakpoint id its hits are reported under
    module: str          # the module's file name
    function: str        # `strlen`, `ns::K::f`
    at: str              # `libc.so.6!strlen`: the address expression it is armed at
    address: int         # link-time address (RVA for PE)
    main: bool = False   # in the main program


@dataclass(frozen=True)
class PatternPlan:
    """One pattern breakpoint: what it matches, the breakpoint its expansions copy, and
    what the files on disk already say it expands to."""

    pattern: SymbolPattern
    template: Any                      # compiler.plan.BreakpointPlan (its `at` never arms)
    id_given: bool                     # False: expansions are named by function alone
    max_matches: int
    where: str                         # "r.yaml:5", for run-time warnings
    preview: tuple[Expansion, ...] = ()
    searched: tuple[str, ...] = ()     # the files the preview looked in

    @property
    def id(self) -> str:
        return str(self.template.id)

    def selects(self, module: Module, main: bool) -> bool:
        """Does this pattern look at `module` (a module of a process; `main`: its main image)?"""
        wanted = self.pattern.module
        if wanted is None:
            return main
        if self.pattern.module_is_glob:
            return module_glob_matches(wanted, module.path)
        return module_matches(wanted, module)

    def expand(self, image: Any, module: Module, main: bool) -> list[Expansion]:
        """The functions of `image` (loaded as `module`) this pattern matches, one per address."""
        out = []
        for f in matching(function_table(image, main), self.pattern.function):
            qualified = f.name if main else f"{module.name}!{f.name}"
            bp_id = f"{self.id}[{qualified}]" if self.id_given else qualified
            out.append(Expansion(bp_id, module.name, f.name, f"{module.name}!{f.linkage}", f.address, main))
        return out


@dataclass(frozen=True)
class PatternSet:
    """The plan's patterns; the engine makes one expander per session from it."""

    patterns: tuple[PatternPlan, ...]
    hardware_free: int = HARDWARE_SLOTS      # debug registers left by the plain hardware breakpoints

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def expander(self) -> PatternExpander:
        return PatternExpander(self)


def pattern_expr(text: str) -> Expr:
    """The `at` of a pattern's template: never evaluated (the template is never armed)."""
    def fail(env: Any) -> int:
        raise EvaluationError(f"'{text}' is a symbol pattern: its functions are armed, not it")
    return Expr(text, frozenset(), fail, False, "int")


def _address_expr(text: str) -> Expr:
    """`libc.so.6!strlen` as an address expression, looked up whole (like `loop.c:42`), so
    a module file name the tokenizer cannot spell (`my prog`) still works."""
    return Expr(text, frozenset({text}), lambda env: env.lookup(text), False, "int")


# -- at run time --------------------------------------------------------------------------------

@dataclass
class PatternExpander:
    """One session's expansions: which modules each pattern has seen, and what it armed."""

    patterns: PatternSet
    seen: set[tuple[int, str]] = field(default_factory=set)       # (pattern index, realpath)
    counts: list[int] = field(default_factory=list)               # expansions per pattern
    modules_seen: list[list[str]] = field(default_factory=list)   # module names each pattern looked at
    members: dict[str, list[str]] = field(default_factory=dict)   # pattern id -> expansion ids
    group: dict[str, str] = field(default_factory=dict)           # expansion id -> pattern id
    enabled: dict[str, bool] = field(default_factory=dict)        # pattern id -> enabled now
    hardware_used: int = 0
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.patterns.patterns)
        self.counts = [0] * n
        self.modules_seen = [[] for _ in range(n)]
        for p in self.patterns.patterns:
            self.members.setdefault(p.id, [])
            self.enabled[p.id] = bool(p.template.enabled)

    def expand(self, module: Module, main: bool, taken: Container[str]) -> list[Any]:
        """New breakpoint plans for the functions of a module that just appeared; `taken`:
        the ids in use (an expansion never reuses one)."""
        new: list[Any] = []
        image: Any = None
        for index, p in enumerate(self.patterns.patterns):
            if not p.selects(module, main):
                continue
            key = (index, os.path.realpath(module.path))
            if key in self.seen:
                continue          # a fork child, or the module loaded again: its breakpoints exist
            self.seen.add(key)
            self.modules_seen[index].append(module.name)
            if image is None:
                try:
                    image = open_module_image(module.path)
                except ImageError:
                    return new    # no file to read symbols from (a vDSO): nothing to match
            found = p.expand(image, module, main)
            if self.counts[index] + len(found) > p.max_matches:
                self.warnings.append(
                    f"pattern '{p.pattern.text}' ({p.where}) matches {len(found)} functions in {module.name}, "
                    f"more than its max_matches of {p.max_matches} allow (with {self.counts[index]} armed "
                    "already): none of them armed; narrow the pattern or raise max_matches")
                continue
            if p.template.type == "hardware":
                room = self.patterns.hardware_free - self.hardware_used
                if len(found) > room:
                    self.warnings.append(
                        f"pattern '{p.pattern.text}' ({p.where}) matches {len(found)} functions in {module.name}, "
                        f"but only {room} debug registers are free: none of them armed (drop --hardware / "
                        "type: hardware, or narrow the pattern)")
                    continue
                self.hardware_used += len(found)
            self.counts[index] += len(found)
            for e in found:
                bp_id = _unique(e.id, taken, new)
                new.append(dataclasses.replace(p.template, id=bp_id, at=_address_expr(e.at), module=None,
                                               static_address=e.address, enabled=self.enabled[p.id]))
                self.members[p.id].append(bp_id)
                self.group[bp_id] = p.id
        return new

    def twin(self, bp_id: str, address: int, placed: dict[str, int]) -> bool:
        """Is another function of the same pattern armed at `address` in a process (`placed`:
        its id -> address)? Indirect functions can pick one implementation (glibc's memcpy
        and memmove): their calls are one breakpoint's, and `bp_id` is dropped from the pattern."""
        pattern_id = self.group.get(bp_id)
        if pattern_id is None:
            return False
        if not any(placed.get(other) == address for other in self.members[pattern_id] if other != bp_id):
            return False
        self.members[pattern_id].remove(bp_id)
        del self.group[bp_id]
        return True

    def set_enabled(self, bp_id: str, enabled: bool) -> list[str] | None:
        """An `enable:`/`disable:` of a pattern's id: the ids of its expansions so far (later
        ones start that way too); None for an id that is not a pattern's."""
        if bp_id not in self.enabled:
            return None
        self.enabled[bp_id] = enabled
        return list(self.members[bp_id])

    def take_warnings(self) -> list[str]:
        out, self.warnings = self.warnings, []
        return out

    def final_warnings(self) -> list[str]:
        """At the end of the session: the patterns that armed nothing, and why."""
        out = []
        for index, p in enumerate(self.patterns.patterns):
            if self.counts[index]:
                continue
            seen = self.modules_seen[index]
            if not seen:
                what = "the program" if p.pattern.is_program else f"no module matching '{p.pattern.module}'"
                out.append(f"pattern '{p.pattern.text}' ({p.where}): {what} was loaded; nothing traced")
            elif not any(p.pattern.text in w for w in self.warnings):
                out.append(f"pattern '{p.pattern.text}' ({p.where}) matched no function in "
                           f"{', '.join(dict.fromkeys(seen))}; nothing traced")
        return out


def _unique(bp_id: str, taken: Container[str], new: Sequence[Any]) -> str:
    ids = {b.id for b in new}
    candidate, n = bp_id, 1
    while candidate in taken or candidate in ids:
        n += 1
        candidate = f"{bp_id}#{n}"
    return candidate


# -- at compile time ------------------------------------------------------------------------------

def split_patterns(recipe: Recipe, breakpoints: Sequence[Any], symbols: Any,
                   errors: list[RecipeError], extra: Sequence[PatternPlan] = ()) -> tuple[tuple[Any, ...], PatternSet]:
    """The compiled breakpoints without their pattern templates, and those as a PatternSet,
    each checked against the files it names that are on disk (errors appended). `extra`:
    plans made elsewhere that expand the same way (compiler/line_plans.py)."""
    by_id = {bp.id: bp for bp in recipe.breakpoints}
    plain: list[Any] = []
    plans: list[PatternPlan] = list(extra)
    for compiled in breakpoints:
        pattern = parse_pattern(compiled.at.text) if isinstance(compiled.at, Expr) else None
        source = by_id.get(compiled.id)
        if pattern is None or source is None:
            plain.append(compiled)
            continue
        location = recipe.where(tuple(source.path) + ("at",))
        plan = PatternPlan(pattern, compiled, source.id_given, source.max_matches or DEFAULT_MAX_MATCHES,
                           f"{recipe.file}:{location.line}")
        plans.append(_preview(plan, symbols, location, errors))
    hardware_free = HARDWARE_SLOTS - sum(1 for b in plain if b.type == "hardware")
    previewed = [e for p in plans if p.template.type == "hardware" for e in p.preview]
    if plans and len(previewed) > hardware_free:
        first = next(p for p in plans if p.template.type == "hardware")
        errors.append(RecipeError(
            f"hardware patterns match {len(previewed)} functions, but only {hardware_free} debug registers "
            "are free (x86 has 4): narrow the pattern, or use soft breakpoints",
            recipe.where(tuple(by_id[first.id].path) + ("type",))))
    return tuple(plain), PatternSet(tuple(plans), hardware_free)


def _preview(plan: PatternPlan, symbols: Any, location: Location, errors: list[RecipeError]) -> PatternPlan:
    """`plan` with what it expands to in the files on disk; a definite miss or an
    expansion past max_matches is an error at `location`."""
    program = getattr(symbols, "program", None)
    files, definite = _files_for(plan.pattern, program)
    expansions: list[Expansion] = []
    for path, main in files:
        try:
            image = open_module_image(path)
        except ImageError:
            continue
        expansions += plan.expand(image, Module(path, 0), main)
    plan = dataclasses.replace(plan, preview=tuple(expansions), searched=tuple(p for p, _ in files))
    if definite and files and not expansions:
        where = " and ".join(p for p, _ in files)
        errors.append(SymbolError(f"pattern '{plan.pattern.text}' matches no function in {where}"
                                  + _expression_hint(plan.pattern.text), location))
    elif len(expansions) > plan.max_matches:
        errors.append(RecipeError(
            f"pattern '{plan.pattern.text}' matches {len(expansions)} functions, more than max_matches "
            f"({plan.max_matches}): narrow it, or give the breakpoint a larger `max_matches:` "
            "(instrument trace: --max-matches)", location))
    return plan


def _expression_hint(text: str) -> str:
    try:
        parse(text)
    except RecipeError:
        return ""
    return " (to multiply in an address expression, put spaces around '*': a '*' without them makes a pattern)"


def _files_for(pattern: SymbolPattern, program: str | None) -> tuple[list[tuple[str, bool]], bool]:
    """The files on disk a pattern names, as (path, is the main program), and whether they
    are all it can match (so matching nothing there is an error)."""
    if pattern.module is None:
        return ([(program, True)] if program else []), True
    if program and not pattern.module_is_glob and module_matches(pattern.module, Module(program, 0)):
        return [(program, True)], True
    needed = needed_libraries(program) if program else ()
    if pattern.module_is_glob:
        files = [(program, True)] if program and module_glob_matches(pattern.module, program) else []
        files += [(path, False) for name in needed if module_glob_matches(pattern.module, name)
                  for path in _find_library(name, program)]
        return files, False      # other matching modules may be dlopen()ed later
    names = [pattern.module] + [n for n in needed if n != pattern.module and module_matches(pattern.module, Module(n, 0))]
    for name in names:
        found = _find_library(name, program)
        if found:
            return [(found[0], False)], True
    return [], False


def _find_library(name: str, program: str | None) -> list[str]:
    """Where the loader would most likely find library `name`: a path as given, else the
    first of LD_LIBRARY_PATH's folders and the system's that has it (RUNPATH is not read)."""
    if "/" in name:
        return [name] if os.path.isfile(name) else []
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += list(LIBRARY_DIRS)
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return [path]
    return []


__all__ = ["DEFAULT_MAX_MATCHES", "Expansion", "PatternExpander", "PatternPlan", "PatternSet",
           "pattern_expr", "split_patterns"]
