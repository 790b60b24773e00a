"""Static address resolution: check a recipe's breakpoint addresses against the program on disk.

Without a process there are no load addresses, so this only decides, for each
`at:` expression, whether it names something that exists (an error with its
column when not), what its link-time address is, and which breakpoints must
wait for a shared library to load (deferred)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import EvaluationError, Location, SymbolError, TargetError
from ..events import Module
from ..expr import SOURCE_LINE, Expr, Value
from ..expr.values import CastType
from .model import Plan

# The symbol layer (pyelftools) is imported where first used: `instrument validate` of a
# recipe without a program to check it against never loads it.
if TYPE_CHECKING:
    from ..symbols.modules import StaticResolver

ANY_LIBRARY = "*"   # `module` of a breakpoint on a symbol the program imports from some library


@functools.lru_cache(maxsize=64)
def _imports(path: str) -> frozenset[str]:
    """Undefined dynamic symbols of an ELF: what its libraries will define."""
    from ..symbols import elfread

    names: set[str] = set()
    with open(path, "rb") as f:
        h = elfread.read_headers(f)
        for sec in h.sections:
            if sec.type == elfread.SHT_DYNSYM and sec.name == ".dynsym":
                for name, _value, _size, _info, shndx in elfread.symbols(f, h, sec):
                    if shndx == elfread.SHN_UNDEF and name:
                        names.add(name.split("@")[0])
                break
    return frozenset(names)


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


class _LinkTimeEnv:
    """Evaluates an address expression with symbols at their link-time addresses."""

    def __init__(self, resolver: StaticResolver | None, params: dict[str, Any]) -> None:
        self.resolver, self.params = resolver, params

    def register(self, name: str) -> int:
        raise EvaluationError(f"register '{name}' has no value before the program runs")

    def read_memory(self, address: int, size: int) -> bytes:
        raise EvaluationError("memory cannot be read before the program runs")

    def type_named(self, name: str) -> CastType:
        raise EvaluationError(f"type '{name}' is not known before the program runs")

    def lookup(self, name: str) -> Value:
        if name in self.params:
            return self.params[name]  # type: ignore[no-any-return]
        address = self.resolver.resolve(name) if self.resolver is not None else None
        if address is None:
            raise EvaluationError(f"'{name}' has no link-time address")
        return address


@dataclass
class StaticSymbols:
    """The compiler's view of the program on disk (symbols.modules.StaticResolver), or of none."""

    program: str | None          # path of an ELF we can read, or None
    resolver: StaticResolver | None = None

    @classmethod
    def for_program(cls, argv0: str | None, cwd: str | None) -> StaticSymbols:
        if not argv0:
            return cls(None)
        path = argv0 if os.path.isabs(argv0) or not cwd else os.path.join(cwd, argv0)
        if not _is_elf(path):
            return cls(None)
        from ..symbols.modules import StaticResolver
        return cls(path, StaticResolver(path))

    def knows(self, name: str, *, variables: bool = True) -> bool:
        """Does the program define or import `name` (so it has an address at run time)?"""
        if self.resolver is None or self.program is None:
            return True
        return (self.resolver.resolve(name) is not None or self.resolver.is_deferred(name)
                or name in _imports(self.program) or (variables and self.is_variable(name)))

    def is_variable(self, name: str) -> bool:
        """Does the program's DWARF declare a variable or parameter `name` (`hdr.len`: `hdr`)?
        Only asked for names that are no param or event field, so a recipe that names
        none reads no DWARF."""
        if self.program is None or "!" in name:
            return False
        from ..symbols.dwarf_info import dwarf_for
        dwarf = dwarf_for(self.program)
        return dwarf is not None and dwarf.knows_variable(name.split(".", 1)[0])

    def classify(self, at: Expr, params: dict[str, Any], location: Location, text: str) -> tuple[str | None, int | None]:
        """(module to wait for or None, link-time address or None) for an `at:` expression;
        raises SymbolError, pointing at the name, for what the program does not have."""
        names = [n for n in sorted(at.names) if n not in params]
        if self.resolver is None or self.program is None:
            return (None, None) if names else (None, _evaluate(at, None, params))
        module: str | None = None
        for name in names:
            if self.resolver.is_deferred(name):
                module = self.resolver.module_of(name)
            elif self.resolver.resolve(name) is None:
                bare = name.split("!", 1)[-1]
                if bare in _imports(self.program):
                    module = module or ANY_LIBRARY
                elif SOURCE_LINE.match(name):
                    raise SymbolError(f"no code for {name} in {self.program} (is it built with -g?)", location)
                else:
                    raise SymbolError(f"unknown symbol '{bare}' in {self.program}",
                                      location.shifted(max(text.find(name), 0)))
        if module is not None:
            return module, None
        return None, _evaluate(at, self.resolver, params)


def _evaluate(at: Expr, resolver: StaticResolver | None, params: dict[str, Any]) -> int | None:
    try:
        return int(at.evaluate(_LinkTimeEnv(resolver, params)))
    except (EvaluationError, ValueError, TypeError):
        return None


# -- `instrument validate --target`: every breakpoint of a plan against a program on disk --------

@dataclass(frozen=True)
class BreakpointResolution:
    """Where one breakpoint will land in a program, decided without running it."""

    id: str
    type: str
    at: str                      # the `at:` expression as written
    address: int | None          # link-time address in the program (PIE: the load base is added at run time)
    module: str | None           # the library it waits for; ANY_LIBRARY: whichever defines the import
    needed: bool | None          # is `module` among the program's DT_NEEDED libraries (None: not applicable)


@dataclass(frozen=True)
class ProgramResolution:
    program: str
    build_id: str | None
    pie: bool
    needed: tuple[str, ...]      # DT_NEEDED, in order
    breakpoints: tuple[BreakpointResolution, ...]


def resolve_plan_statically(plan: Plan) -> ProgramResolution:
    """Each breakpoint of a plan compiled with `command=(program,)`: its link-time address, or
    the module it is deferred to. Raises TargetError when the program is not a readable ELF
    (compile_plan has already raised SymbolError for names the program lacks)."""
    from ..symbols.elf import needed_libraries, open_image
    from ..symbols.modules import module_matches

    program = plan.target.argv[0] if plan.target.argv else None
    if program is None or not _is_elf(program):
        raise TargetError(f"{program or 'no program'}: " + (_script_hint(program) or "not a readable ELF file"))
    image = open_image(program)
    needed = needed_libraries(image.path)

    def is_needed(module: str | None) -> bool | None:
        if module is None or module == ANY_LIBRARY:
            return None
        return any(module_matches(module, Module(n, 0)) for n in needed)

    rows = tuple(BreakpointResolution(bp.id, bp.type, bp.at.text, bp.static_address, bp.module,
                                      is_needed(bp.module)) for bp in plan.breakpoints)
    return ProgramResolution(program, image.build_id, image.is_pie, needed, rows + _pattern_rows(plan, is_needed))


def _pattern_rows(plan: Any, is_needed: Any) -> tuple[BreakpointResolution, ...]:
    """A symbol pattern's rows: each function it matched in the files on disk (one in the
    program lands at its link-time address; one in a library, when that loads), or the
    pattern itself when nothing on disk could be checked yet."""
    rows = []
    for p in plan.patterns.patterns if plan.patterns else ():
        kind = p.template.type
        if not p.preview:
            module = p.pattern.module or ANY_LIBRARY
            rows.append(BreakpointResolution(p.id, kind, p.pattern.text, None, module, is_needed(module)))
        for e in p.preview:
            module = None if e.main else e.module
            rows.append(BreakpointResolution(e.id, kind, f"{p.pattern.text} ({e.function})",
                                             e.address if e.main else None, module, is_needed(module)))
    return tuple(rows)


def _script_hint(program: str | None) -> str:
    """For a `#!` script (which `run` starts fine): which program to check instead."""
    try:
        with open(program or "", "rb") as f:
            first = f.readline(256)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    return (f"a script ({first.decode('utf-8', 'replace').strip()}), not an ELF file: give --target "
            "the program it runs, whose symbols the breakpoints name")
