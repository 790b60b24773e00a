"""Actions that add information to the record: log, backtrace, disassemble."""

from __future__ import annotations

from typing import Any

from ..arch import x86_64 as regdefs
from ..recipe.model import Action
from .base import ActionContext, CompileContext, CompiledAction, action_path, error


def compile_log(action: Action, ctx: CompileContext) -> CompiledAction:
    args = action.args
    message: str | None
    reg_spec: Any
    if isinstance(args, dict):
        message, reg_spec = args.get("message"), args.get("registers")
        msg_path = action_path(action, "message")
    else:
        message, reg_spec = str(args), None
        msg_path = action_path(action)
    fmt = ctx.format(message, msg_path) if message is not None else None
    names: tuple[str, ...] = ()
    if reg_spec == "all":
        names = tuple(regdefs.GENERAL_REGISTERS)
    elif reg_spec:
        for i, name in enumerate(reg_spec):
            if not regdefs.is_register(str(name)):
                raise error(f"unknown register '{name}'", ctx, action_path(action, "registers", i))
        names = tuple(str(n) for n in reg_spec)

    def run(ac: ActionContext) -> None:
        if fmt is not None:
            text = fmt.render(ac.env)
            old = ac.record.get("message")
            ac.record["message"] = text if old is None else f"{old}\n{text}"
        if names:
            regs = ac.record.setdefault("registers", {})
            for name in names:
                regs[name] = hex(regdefs.read_register(ac.regs, name))

    parts = [repr(message)] if message is not None else []
    if names:
        parts.append("registers " + ("all" if reg_spec == "all" else ",".join(names)))
    reads = fmt.reads if fmt is not None else frozenset()
    if reads is not None:
        reads |= frozenset(names)
    return CompiledAction("log", "log " + " + ".join(parts), run, reads)


def compile_backtrace(action: Action, ctx: CompileContext) -> CompiledAction:
    depth = int((action.args or {}).get("depth", 32)) if isinstance(action.args, dict) else 32

    def run(ac: ActionContext) -> None:
        ac.record["frames"] = ac.backtrace(depth)

    return CompiledAction("backtrace", f"backtrace depth {depth}", run)


def compile_disassemble(action: Action, ctx: CompileContext) -> CompiledAction:
    args = action.args if isinstance(action.args, dict) else {}
    count = int(args.get("count", 8))
    at = ctx.expr(args["at"], action_path(action, "at")) if "at" in args else None

    def run(ac: ActionContext) -> None:
        address = int(at.evaluate(ac.env)) if at is not None else None
        # Several disassemble actions in one stop add up (each line has its address).
        found = ac.disassemble(address, count)       # raises before the record has an empty list
        ac.record.setdefault("disassembly", []).extend(found)

    where = f" at {at.text}" if at is not None else ""
    return CompiledAction("disassemble", f"disassemble {count}{where}", run)
