"""Load and compile a recipe, collecting every error of the file in one pass, sorted by line."""

from __future__ import annotations

import os
from typing import Any

from ..errors import InstrumentError, RecipeError, RecipeErrors
from ..recipe.load import merge_errors, salvage_recipe
from ..recipe.model import Recipe
from .plan import Plan, compile_plan


def compile_recipe(path_or_text: str | os.PathLike[str], *, file: str | None = None, **options: Any) -> Plan:
    """load_recipe + compile_plan(**options), but reporting together what each finds.

    The schema's errors do not hide the expression and symbol errors the compiler
    finds in the rest of the file (recipe/salvage.py cuts out what the schema
    refused first). Raises RecipeErrors holding all of them, sorted by line; a YAML
    syntax error comes alone, since nothing else can be read then."""
    recipe, errors = salvage_recipe(path_or_text, file=file)
    if recipe is None:
        raise RecipeErrors(errors)
    try:
        plan = compile_plan(recipe, **options)
    except RecipeErrors as e:
        raise RecipeErrors(merge_errors(errors, _explained(recipe, errors, e.errors), same_line=True)) from None
    except RecipeError as e:
        raise RecipeErrors(merge_errors(errors, _explained(recipe, errors, [e]), same_line=True)) from None
    except InstrumentError:
        if errors:               # "no target", a program for another CPU: the recipe's errors first
            raise RecipeErrors(errors) from None
        raise
    if errors:
        raise RecipeErrors(errors)
    return plan


def _explained(recipe: Recipe, first: list[RecipeError], later: list[RecipeError]) -> list[RecipeError]:
    """`later` without the errors about a whole breakpoint (located at its entry, such as
    the backend's "too many hardware breakpoints") that an error inside that breakpoint
    found first already explains ("hardware breakpoint number 5")."""
    entries = sorted((loc.line, loc.col) for path, loc in recipe.positions.items()
                     if len(path) == 2 and path[0] == "breakpoints")
    if not entries:
        return later

    def entry_of(e: RecipeError) -> tuple[int, int] | None:
        if e.location is None:
            return None
        place = (e.location.line, e.location.col)
        return max((s for s in entries if s <= place), default=None)

    reported = {entry_of(e) for e in first}
    return [e for e in later if not (e.location is not None and (e.location.line, e.location.col) in entries
                                     and entry_of(e) in reported)]

