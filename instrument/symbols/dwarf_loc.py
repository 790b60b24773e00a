"""DWARF location expressions (DW_AT_location, DW_AT_frame_base) evaluated against one frame.

The result is a `Place`: memory at an address, a register, an implicit value
(DW_OP_stack_value, DW_OP_implicit_value), pieces of those (DW_OP_piece), or
nothing (optimized out). The frame comes in as plain values (registers by
DWARF number, a memory reader, callbacks for the frame base, the CFA and entry
values), so this runs the same under any backend and in unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from elftools.dwarf.dwarf_expr import DWARFExprParser

from ..arch.x86_64 import MASK64
from ..errors import EvaluationError
from .cfi_rules import DWARF_REGS
from .dwarf_stack import step


class OptimizedOut(EvaluationError):
    """The variable has no location at this pc (or a piece of it has none)."""


@dataclass(frozen=True)
class Place:
    kind: str                                  # memory | register | value | pieces | optimized
    address: int = 0                           # memory
    register: int = 0                          # register: DWARF number
    value: bytes = b""                         # value: the bytes themselves
    pieces: tuple[tuple[Place, int], ...] = ()  # pieces: (place, size in bytes)


OPTIMIZED = Place("optimized")


@dataclass
class FrameInputs:
    """What evaluating a location needs of the frame it is in."""

    regs: Mapping[int, int]                       # DWARF register number -> value
    read: Callable[[int, int], bytes]             # raises EvaluationError
    frame_base: Callable[[], int]                 # DW_AT_frame_base of the function
    cfa: Callable[[], int]                        # DW_OP_call_frame_cfa (from the CFI)
    entry_value: Callable[[Sequence[Any]], int]   # DW_OP_entry_value(sub-expression)
    bias: int = 0                                 # load bias: added to DW_OP_addr's link-time address


def register_name(num: int) -> str:
    return DWARF_REGS.get(num, f"xmm{num - 17}" if 17 <= num <= 32 else f"DWARF register {num}")


def _reg(inputs: FrameInputs, num: int) -> int:
    if num not in inputs.regs:
        raise EvaluationError(f"register {register_name(num)} is not available")
    return inputs.regs[num]


def _read_word(inputs: FrameInputs, address: int, size: int = 8) -> int:
    data = inputs.read(address & MASK64, size)
    if len(data) != size:
        raise EvaluationError(f"cannot read {size} bytes at {address & MASK64:#x}")
    return int.from_bytes(data, "little")


def parse_ops(parser: DWARFExprParser, expr: Sequence[int]) -> list[Any]:
    return parser.parse_expr(bytes(expr))


def evaluate(ops: Sequence[Any], inputs: FrameInputs) -> Place:
    """The Place a parsed location expression names in this frame; raises EvaluationError."""
    if not ops:
        return OPTIMIZED
    stack: list[int] = []
    pieces: list[tuple[Place, int]] = []
    place: Place | None = None          # set by DW_OP_reg*, DW_OP_stack_value, DW_OP_implicit_value
    def reg(num: int) -> int:
        return _reg(inputs, num)

    def word(address: int, size: int) -> int:
        return _read_word(inputs, address, size)

    i = 0
    while i < len(ops):
        op = ops[i]
        name: str = op.op_name
        args = op.args
        i += 1
        if name == "DW_OP_piece":
            if place is None:
                place = Place("memory", stack.pop() & MASK64) if stack else OPTIMIZED
            pieces.append((place, int(args[0])))
            place, stack = None, []
            continue
        if place is not None:
            raise EvaluationError(f"unsupported DWARF location: {name} after a register or value")
        if name.startswith("DW_OP_reg") and name != "DW_OP_regx" and name[9:].isdigit():
            place = Place("register", register=int(name[9:]))
        elif name == "DW_OP_regx":
            place = Place("register", register=int(args[0]))
        elif name == "DW_OP_fbreg":
            stack.append(inputs.frame_base() + int(args[0]))
        elif name == "DW_OP_call_frame_cfa":
            stack.append(inputs.cfa())
        elif name == "DW_OP_addr":
            stack.append(int(args[0]) + inputs.bias)
        elif name in ("DW_OP_entry_value", "DW_OP_GNU_entry_value"):
            stack.append(inputs.entry_value(args[0]))
        elif name == "DW_OP_stack_value":
            place = Place("value", value=(stack.pop() & MASK64).to_bytes(8, "little"))
        elif name == "DW_OP_implicit_value":
            place = Place("value", value=bytes(args[1]) if len(args) > 1 else b"")
        elif name in ("DW_OP_implicit_pointer", "DW_OP_GNU_implicit_pointer"):
            raise OptimizedOut("optimized out (only an implicit pointer to it remains)")
        else:
            try:
                known = step(name, args, stack, reg, word)
            except ZeroDivisionError as e:
                raise EvaluationError(str(e)) from None
            if not known:
                raise EvaluationError(f"unsupported DWARF location operation {name}")
        stack = [v & MASK64 for v in stack[-64:]]
    if pieces:
        if place is not None or stack:
            pieces.append((place or Place("memory", stack[-1]), 0))
        return Place("pieces", pieces=tuple(pieces))
    if place is not None:
        return place
    if not stack:
        return OPTIMIZED
    return Place("memory", stack[-1] & MASK64)


def read_place(place: Place, size: int, inputs: FrameInputs) -> bytes:
    """The `size` bytes the object at `place` holds; raises OptimizedOut or EvaluationError."""
    if place.kind == "optimized":
        raise OptimizedOut("optimized out")
    if place.kind == "memory":
        data = inputs.read(place.address, size)
        if len(data) != size:
            raise EvaluationError(f"cannot read {size} bytes at {place.address:#x}")
        return data
    if place.kind == "register":
        value = _reg(inputs, place.register)
        if size > 8:
            raise EvaluationError(f"a {size}-byte value in register {register_name(place.register)}")
        return value.to_bytes(8, "little")[:size]
    if place.kind == "value":
        return (place.value + bytes(max(0, size - len(place.value))))[:size]
    out = bytearray()
    for piece, piece_size in place.pieces:
        want = piece_size or max(0, size - len(out))
        out += read_place(piece, want, inputs)
    if len(out) < size:
        raise OptimizedOut("optimized out (in part)")
    return bytes(out[:size])
