"""Actions that add information to the record: log, backtrace, disassemble."""

from __future__ import annotations

from typing import Any

from ..arch import x86_64 as regdefs
from ..arch.x86_64 import MASK64
from ..errors import EvaluationError
from ..expr import Expr, Value
from ..expr.values import Object
from ..recipe.model import Action
from .base import ActionContext, CompileContext, CompiledAction, action_path, error


# How much of a typed value a record shows: structs nested this deep, arrays this long.
VALUE_DEPTH = 3
VALUE_LENGTH = 32


def json_value(value: Value) -> Any:
    """An expression's value as JSON: a typed one (a DWARF variable) by its type."""
    if isinstance(value, Object):
        return value.to_json(VALUE_DEPTH, VALUE_LENGTH)
    return value


def _log_variables(ac: ActionContext, field: str, names: list[tuple[str, Expr | None]]) -> None:
    """Each variable into record[field][name]; one that has no value here (optimized
    out, unreadable) is null there, with the reason in the record's errors."""
    out = ac.record.setdefault(field, {})
    for text, expr in names:
        try:
            out[text] = json_value(expr.evaluate(ac.env) if expr is not None else ac.env.lookup(text))
        except EvaluationError as e:
            out[text] = None
            ac.record.setdefault("errors", []).append(f"log {field}: {e}")


def compile_log(action: Action, ctx: CompileContext) -> CompiledAction:
    args = action.args
    message: str | None
    reg_spec: Any
    variables: list[tuple[str, Expr | None]] = []
    scopes: list[tuple[str, bool]] = []
    if isinstance(args, dict):
        message, reg_spec = args.get("message"), args.get("registers")
        msg_path = action_path(action, "message")
        for i, text in enumerate(args.get("vars") or ()):
            variables.append((str(text).strip(), ctx.expr(str(text), action_path(action, "vars", i))))
        scopes = [(key, key == "args") for key in ("args", "locals") if args.get(key)]
        if variables or scopes:
            ctx.uses_variables("log vars/args/locals")
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
    readers = tuple((name, regdefs.full_register(name) == name) for name in names)

    def run(ac: ActionContext) -> None:
        if fmt is not None:
            text = fmt.render(ac.env)
            old = ac.record.get("message")
            ac.record["message"] = text if old is None else f"{old}\n{text}"
        if names:
            out = ac.record.setdefault("registers", {})
            regs = ac.regs               # (after: without registers the record says so, empty)
            for name, full in readers:
                # A full register read in place (every hit of a register log), not
                # through read_register's sub-register lookup.
                out[name] = hex(regs[name] & MASK64 if full else regdefs.read_register(regs, name))
        if variables:
            _log_variables(ac, "vars", variables)
        for field, params in scopes:
            _log_variables(ac, field, [(n, None) for n in ac.scope_names(params)])

    parts = [repr(message)] if message is not None else []
    if names:
        parts.append("registers " + ("all" if reg_spec == "all" else ",".join(names)))
    if variables:
        parts.append("vars " + ",".join(t for t, _ in variables))
    parts += [field for field, _ in scopes]
    reads = fmt.reads if fmt is not None else frozenset()
    if reads is not None:
        reads |= frozenset(names)
    if variables or scopes:
        reads = None          # DWARF variables live in memory and in the stopped frame
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
