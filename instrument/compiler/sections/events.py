"""The `events:` section: handlers by event name, exception name, or `any`."""

from __future__ import annotations

from ...actions import CompileContext
from ...errors import RecipeError
from ...events import EVENT_CODES_BY_NAME, ExceptionCode
from ...recipe.model import Recipe
from ..table import Handler, TableBuilder, compile_actions

CATCH_ALL = "any"
EXCEPTION_KEYS: dict[str, int] = {c.name.lower(): int(c) for c in ExceptionCode}


def compile_events(recipe: Recipe, ctx: CompileContext, table: TableBuilder, errors: list[RecipeError]) -> None:
    for key, actions in recipe.events.items():
        handler = Handler(key, compile_actions(actions, ctx, errors))
        if key == CATCH_ALL:
            table.catch_all = handler
        elif key in EVENT_CODES_BY_NAME:
            table.by_event[EVENT_CODES_BY_NAME[key]] = handler
        elif key in EXCEPTION_KEYS:
            table.by_exception[EXCEPTION_KEYS[key]] = handler
        else:  # the schema lists the keys; this guards against the two drifting apart
            errors.append(RecipeError(f"unknown event '{key}'", recipe.where(("events", key), key=True)))
