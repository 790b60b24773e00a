"""Actions that change control: set (registers), return, enable/disable, detach/kill/stop."""

from __future__ import annotations

from ..arch import x86_64 as regdefs
from ..recipe.model import Action
from .base import ActionContext, CompileContext, CompiledAction, action_path, error

ARG_NAMES = {f"arg{i}": i for i in range(6)}


def compile_set(action: Action, ctx: CompileContext) -> CompiledAction:
    assignments = []
    for name, value in action.args.items():
        if name not in ARG_NAMES and name != "retval" and not regdefs.is_register(name):
            raise error(f"cannot set '{name}': not a register, arg0..arg5 or retval", ctx, action_path(action, name))
        assignments.append((name, ctx.expr(value, action_path(action, name))))

    def run(ac: ActionContext) -> None:
        # Evaluate every right-hand side first so `set: {rdi: rsi, rsi: rdi}` swaps.
        values = [(name, int(e.evaluate(ac.env))) for name, e in assignments]
        for name, v in values:
            if name in ARG_NAMES:
                ac.write_arg(ARG_NAMES[name], v)
            else:
                regdefs.write_register(ac.regs, "rax" if name == "retval" else name, v & regdefs.MASK64)

    text = ", ".join(f"{n}={e.text}" for n, e in assignments)
    return CompiledAction("set", f"set {text}", run)


def compile_return(action: Action, ctx: CompileContext) -> CompiledAction:
    value = ctx.expr(action.args, action_path(action))

    def run(ac: ActionContext) -> None:
        ac.force_return(int(value.evaluate(ac.env)) & regdefs.MASK64)

    return CompiledAction("return", f"return {value.text}", run)


def _compile_toggle(action: Action, ctx: CompileContext, enabled: bool) -> CompiledAction:
    target = str(action.args)
    if target not in ctx.breakpoint_ids:
        raise error(f"{action.kind}: no breakpoint with id '{target}'", ctx, action_path(action))

    def run(ac: ActionContext) -> None:
        ac.set_enabled(target, enabled)

    return CompiledAction(action.kind, f"{action.kind} {target}", run)


def compile_enable(action: Action, ctx: CompileContext) -> CompiledAction:
    return _compile_toggle(action, ctx, True)


def compile_disable(action: Action, ctx: CompileContext) -> CompiledAction:
    return _compile_toggle(action, ctx, False)


def compile_end(action: Action, ctx: CompileContext) -> CompiledAction:
    how = action.kind

    def run(ac: ActionContext) -> None:
        ac.end_session(how)

    return CompiledAction(how, how, run)
