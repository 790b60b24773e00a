"""The action registry: action name -> compile function (recipe Action -> CompiledAction).

A new action is a module in this folder with a compile function, plus one
`register(...)` line below. An action shipped with instrument describes its
YAML in schemas/recipe.schema.json ($defs/action: the published contract the
reference page is generated from); one registered from anywhere else passes its
JSON Schema fragment to `register`, and recipes naming it validate from then on.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..recipe import schema as recipe_schema
from ..recipe.model import Action
from .base import ActionContext, CompileContext, CompiledAction
from .flow import compile_disable, compile_enable, compile_end, compile_return, compile_set
from .memory import compile_dump, compile_write
from .output import compile_backtrace, compile_disassemble, compile_log

__all__ = ["ACTIONS", "ActionContext", "CompileContext", "CompiledAction", "Compile", "compile_action",
           "register", "unregister"]

Compile = Callable[[Action, CompileContext], CompiledAction]

ACTIONS: dict[str, Compile] = {}


def register(name: str, compile: Compile, *, schema: Mapping[str, Any] | None = None,
             bare: bool = False) -> None:
    """Make `name` an action: `compile` turns each recipe Action of that kind into a
    CompiledAction, once, when the recipe is compiled. `schema` (JSON Schema of the
    action's value) and `bare` (it may be written without one) add it to the recipe
    schema; leave them out for an action recipe.schema.json already describes."""
    if name in ACTIONS:
        raise ValueError(f"action '{name}' is already registered")
    if schema is not None:
        recipe_schema.add_action(name, schema, bare=bare)
    ACTIONS[name] = compile


def unregister(name: str) -> None:
    """Remove an action registered with a schema of its own (a test's clean-up)."""
    ACTIONS.pop(name, None)
    recipe_schema.remove_action(name)


register("log", compile_log)
register("dump", compile_dump)
register("write", compile_write)
register("set", compile_set)
register("return", compile_return)
register("backtrace", compile_backtrace)
register("disassemble", compile_disassemble)
register("enable", compile_enable)
register("disable", compile_disable)
register("detach", compile_end)
register("kill", compile_end)
register("stop", compile_end)


def compile_action(action: Action, ctx: CompileContext) -> CompiledAction:
    return ACTIONS[action.kind](action, ctx)
