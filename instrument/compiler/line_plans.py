"""Source-line breakpoints with several locations: `at: util.h:12` in an inlined function.

A line of a function inlined into three callers has code in each of them; gdb
sets one breakpoint location per function (1.1, 1.2, 1.3). Here such a line is
planned like a symbol pattern (compiler/patterns.py) whose matches are those
locations: one breakpoint each, named `ID[function]`, armed in the main program
at `file:line#K` (modules.ModuleMap resolves the K-th location), enabled and
disabled together by the line breakpoint's id. A line with one location stays
an ordinary breakpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from ..events import Module
from ..expr import SOURCE_LINE
from ..recipe.globs import SymbolPattern
from .patterns import Expansion, PatternPlan, pattern_expr


@dataclass(frozen=True)
class LinePlan(PatternPlan):
    """A `file:line` breakpoint armed at each of the line's locations in the program."""

    file: str = ""
    line: int = 0                  # the line asked for
    used_line: int = 0             # the line with code it lands on (the next one when `line` has none)

    @property
    def line_spec(self) -> bool:
        return True

    @property
    def note(self) -> str | None:
        return line_note(self.line, self.used_line, self.pattern.text)

    def selects(self, module: Module, main: bool) -> bool:
        return main               # as `file:line` resolves: the program's lines first

    def expand(self, image: Any, module: Module, main: bool) -> list[Expansion]:
        locations = getattr(image, "line_locations", None)
        found = locations(self.file, self.line) if main and locations is not None else None
        if found is None:
            return []
        out = []
        for k, address in enumerate(found[1], start=1):
            hit = image.symbolize(address)
            function = hit[0] if hit is not None else f"{address:#x}"
            out.append(Expansion(f"{self.id}[{function}]", module.name, function,
                                 f"{self.file}:{found[0]}#{k}", address, True))
        return out


def line_note(asked: int, used: int, text: str) -> str | None:
    """What explain says of a line without code: where the breakpoint goes instead."""
    if asked == used:
        return None
    return f"line {asked} of {text.rsplit(':', 1)[0]} has no code: on line {used}, the next line with code (as gdb)"


def static_line_note(text: str, symbols: Any) -> str | None:
    """line_note for a `file:line` text, checked against the program on disk (None when
    the text is no source line, or there is no program to read)."""
    resolver = getattr(symbols, "resolver", None)
    if resolver is None or not SOURCE_LINE.match(text.strip()):
        return None
    found = resolver.line_locations(text.strip())
    if found is None:
        return None
    return line_note(int(text.strip().rsplit(":", 1)[1]), found[0], text.strip())


def split_lines(recipe: Any, breakpoints: Sequence[Any], symbols: Any) -> tuple[list[Any], list[LinePlan]]:
    """The compiled breakpoints without the source lines that have several locations,
    and those as LinePlans."""
    by_id = {bp.id: bp for bp in recipe.breakpoints}
    rest: list[Any] = []
    lines: list[LinePlan] = []
    for compiled in breakpoints:
        source = by_id.get(compiled.id)
        plan = None
        if source is not None:
            where = recipe.where(tuple(source.path) + ("at",))
            plan = line_plan(compiled, symbols, f"{recipe.file}:{where.line}")
        if plan is None:
            rest.append(compiled)
        else:
            lines.append(plan)
    return rest, lines


def line_plan(compiled: Any, symbols: Any, where: str) -> LinePlan | None:
    """The LinePlan of a compiled `file:line` breakpoint whose line has code in more than
    one function of the program on disk, or None (one location, or nothing to read)."""
    text = compiled.at.text.strip()
    resolver = getattr(symbols, "resolver", None)
    if compiled.type == "memory" or not SOURCE_LINE.match(text) or resolver is None:
        return None
    found = resolver.line_locations(text)
    if found is None or len(found[1]) < 2:
        return None
    file, line = text.rsplit(":", 1)
    template = dataclasses.replace(compiled, at=pattern_expr(text))
    plan = LinePlan(SymbolPattern(text, None, text), template, True, len(found[1]), where,
                    file=file, line=int(line), used_line=found[0])
    preview = plan.expand(resolver.image, Module(symbols.program, 0), True)
    return dataclasses.replace(plan, preview=tuple(preview), searched=(symbols.program,))
