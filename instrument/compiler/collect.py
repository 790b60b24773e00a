"""Load and compile a recipe, collecting every error of the file in one pass, sorted by line."""

from __future__ import annotations

import os
from typing import Any

from ..errors import InstrumentError, RecipeError, RecipeErrors
from ..recipe.load import merge_errors, salvage_recipe
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
        raise RecipeErrors(merge_errors(errors, e.errors, same_line=True)) from None
    except RecipeError as e:
        raise RecipeErrors(merge_errors(errors, [e], same_line=True)) from None
    except InstrumentError:
        if errors:               # "no target", a program for another CPU: the recipe's errors first
            raise RecipeErrors(errors) from None
        raise
    if errors:
        raise RecipeErrors(errors)
    return plan

