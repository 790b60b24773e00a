"""The action registry: action name -> compile function (recipe Action -> CompiledAction)."""

from __future__ import annotations

from typing import Callable

from ..recipe.model import Action
from .base import ActionContext, CompileContext, CompiledAction
from .flow import compile_disable, compile_enable, compile_end, compile_return, compile_set
from .memory import compile_dump, compile_write
from .output import compile_backtrace, compile_disassemble, compile_log

__all__ = ["ACTIONS", "ActionContext", "CompileContext", "CompiledAction", "compile_action"]

ACTIONS: dict[str, Callable[[Action, CompileContext], CompiledAction]] = {
    "log": compile_log,
    "dump": compile_dump,
    "write": compile_write,
    "set": compile_set,
    "return": compile_return,
    "backtrace": compile_backtrace,
    "disassemble": compile_disassemble,
    "enable": compile_enable,
    "disable": compile_disable,
    "detach": compile_end,
    "kill": compile_end,
    "stop": compile_end,
}


def compile_action(action: Action, ctx: CompileContext) -> CompiledAction:
    return ACTIONS[action.kind](action, ctx)
