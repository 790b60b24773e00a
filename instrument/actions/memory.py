"""Actions that read or change target memory: dump, write."""

from __future__ import annotations

from typing import Callable

from ..errors import EvaluationError
from ..recipe.model import Action
from .base import ActionContext, CompileContext, CompiledAction, action_path, error

MAX_DUMP = 16 * 1024 * 1024   # a runaway size expression must not exhaust our memory
INT_PAYLOADS = {"u8": (1, False), "u16": (2, False), "u32": (4, False), "u64": (8, False),
                "i8": (1, True), "i16": (2, True), "i32": (4, True), "i64": (8, True)}


def compile_dump(action: Action, ctx: CompileContext) -> CompiledAction:
    args = action.args
    at = ctx.expr(args["at"], action_path(action, "at"))
    size = ctx.expr(args["size"], action_path(action, "size"))
    file_fmt = ctx.format(str(args["file"]), action_path(action, "file")) if args.get("file") else None

    def run(ac: ActionContext) -> None:
        address, length = int(at.evaluate(ac.env)), int(size.evaluate(ac.env))
        if not 0 <= length <= MAX_DUMP:
            raise EvaluationError(f"dump size {length} is out of range (0..{MAX_DUMP})")
        data = ac.read_memory(address, length)
        entry: dict[str, object] = {"at": hex(address), "size": length}
        if file_fmt is not None:
            target = ac.output_path(file_fmt.render(ac.env))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            entry["file"] = str(target)
        else:
            entry["hex"] = data.hex()
        ac.record.setdefault("dump", []).append(entry)

    into = f" -> {args['file']}" if file_fmt is not None else ""
    return CompiledAction("dump", f"dump {size.text} bytes at {at.text}{into}", run)


def compile_write(action: Action, ctx: CompileContext) -> CompiledAction:
    args = action.args
    at = ctx.expr(args["at"], action_path(action, "at"))
    encode: Callable[[ActionContext], bytes]
    if "bytes" in args:
        try:
            payload = bytes.fromhex(str(args["bytes"]))
        except ValueError:
            raise error("'bytes' must be hex digits, e.g. \"90 90 c3\"", ctx, action_path(action, "bytes")) from None
        encode = _constant(payload)
        what = f"{len(payload)} bytes"
    elif "string" in args:
        # C strings: the program reads up to the NUL, so write one.
        payload = str(args["string"]).encode() + b"\0"
        encode = _constant(payload)
        what = f"string {args['string']!r}"
    else:
        (kind,) = [k for k in args if k in INT_PAYLOADS]
        width, signed = INT_PAYLOADS[kind]
        value = ctx.expr(args[kind], action_path(action, kind))
        mask = (1 << (8 * width)) - 1

        def encode(ac: ActionContext) -> bytes:
            return (int(value.evaluate(ac.env)) & mask).to_bytes(width, "little")
        what = f"{kind} {value.text}"

    def run(ac: ActionContext) -> None:
        ac.write_memory(int(at.evaluate(ac.env)), encode(ac))

    return CompiledAction("write", f"write {what} at {at.text}", run)


def _constant(payload: bytes) -> Callable[[ActionContext], bytes]:
    """The encoder of a payload fixed when the recipe was compiled."""
    return lambda ac: payload
