"""The `crash:` section: actions for a fatal (last-chance) exception, after its crash analysis."""

from __future__ import annotations

from ...actions import CompileContext
from ...errors import RecipeError
from ...recipe.model import Recipe
from ..table import Handler, TableBuilder, compile_actions


def compile_crash(recipe: Recipe, ctx: CompileContext, table: TableBuilder, errors: list[RecipeError]) -> None:
    if recipe.crash:
        table.crash = Handler("crash", compile_actions(recipe.crash, ctx, errors))
