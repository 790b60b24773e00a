"""The handler-section registry: recipe section name -> the function that compiles it into the table.

A section is a top-level recipe key whose entries become handlers (`events:`,
`crash:`). Each has one module here with one compile function, registered by
one line in SECTIONS; the compiler runs them all, in this order, into one
HandlerTable, which the engine consults without knowing which section filled it.
"""

from __future__ import annotations

from typing import Callable

from ...actions import CompileContext
from ...errors import RecipeError
from ...recipe.model import Recipe
from ..table import HandlerTable, TableBuilder
from .crash import compile_crash
from .events import compile_events
from .signals import compile_signals
from .syscalls import compile_syscalls

# (the recipe, the compile context, the table being built, where errors go) -> None
SectionCompiler = Callable[[Recipe, CompileContext, TableBuilder, list[RecipeError]], None]

SECTIONS: dict[str, SectionCompiler] = {
    "events": compile_events,
    "crash": compile_crash,
    "signals": compile_signals,
    "syscalls": compile_syscalls,
}


def compile_sections(recipe: Recipe, ctx: CompileContext, errors: list[RecipeError]) -> HandlerTable:
    """Every registered section of `recipe`, compiled into one handler table."""
    table = TableBuilder()
    for compile_section in SECTIONS.values():
        compile_section(recipe, ctx, table, errors)
    return table.build()
