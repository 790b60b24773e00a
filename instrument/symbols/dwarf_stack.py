"""The generic operations of the DWARF expression stack machine (DWARF 5 section 2.5).

Both users run these: location expressions of variables (dwarf_loc.py, which adds
registers, pieces, frame bases and values) and the expressions of call frame
information (cfi_rules.py). Each passes its own register and memory readers, which
raise its own error, so one stack machine serves both.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..arch.x86_64 import MASK64

ReadReg = Callable[[int], int]            # DWARF register number -> value
ReadWord = Callable[[int, int], int]      # (address, size) -> little-endian value


def signed(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def _divide(a: int, b: int) -> int:
    if not b:
        raise ZeroDivisionError("division by zero in a DWARF expression")
    return int(signed(a) / signed(b))


def _modulo(a: int, b: int) -> int:
    if not b:
        raise ZeroDivisionError("division by zero in a DWARF expression")
    return a % b


# Comparisons and DW_OP_shra are signed, the rest on 64-bit values (DWARF 5, 2.5.1.4).
BINARY: dict[str, Callable[[int, int], int]] = {
    "DW_OP_plus": lambda a, b: a + b, "DW_OP_minus": lambda a, b: a - b,
    "DW_OP_mul": lambda a, b: a * b, "DW_OP_and": lambda a, b: a & b,
    "DW_OP_or": lambda a, b: a | b, "DW_OP_xor": lambda a, b: a ^ b,
    "DW_OP_shl": lambda a, b: a << (b & 63), "DW_OP_shr": lambda a, b: a >> (b & 63),
    "DW_OP_shra": lambda a, b: signed(a) >> (b & 63),
    "DW_OP_div": _divide, "DW_OP_mod": _modulo,
    "DW_OP_ge": lambda a, b: int(signed(a) >= signed(b)), "DW_OP_gt": lambda a, b: int(signed(a) > signed(b)),
    "DW_OP_le": lambda a, b: int(signed(a) <= signed(b)), "DW_OP_lt": lambda a, b: int(signed(a) < signed(b)),
    "DW_OP_eq": lambda a, b: int(a == b), "DW_OP_ne": lambda a, b: int(a != b),
}

_CONSTANTS = frozenset(("DW_OP_const1u", "DW_OP_const2u", "DW_OP_const4u", "DW_OP_const8u",
                        "DW_OP_const1s", "DW_OP_const2s", "DW_OP_const4s", "DW_OP_const8s",
                        "DW_OP_constu", "DW_OP_consts"))


def step(name: str, args: Sequence[Any], stack: list[int], reg: ReadReg, read: ReadWord) -> bool:
    """Apply one generic operation to `stack`; False when `name` is not one of them
    (the caller's own operations: registers as places, DW_OP_addr, pieces, ...).
    A short stack raises IndexError, a zero divisor ZeroDivisionError."""
    if name.startswith("DW_OP_breg") and name[10:].isdigit():
        stack.append(reg(int(name[10:])) + int(args[0]))
    elif name == "DW_OP_bregx":
        stack.append(reg(int(args[0])) + int(args[1]))
    elif name in _CONSTANTS:
        stack.append(int(args[0]))
    elif name.startswith("DW_OP_lit") and name[9:].isdigit():
        stack.append(int(name[9:]))
    elif name == "DW_OP_plus_uconst":
        stack.append(stack.pop() + int(args[0]))
    elif name in BINARY:
        b, a = stack.pop(), stack.pop()
        stack.append(BINARY[name](a, b))
    elif name == "DW_OP_deref":
        stack.append(read(stack.pop() & MASK64, 8))
    elif name == "DW_OP_deref_size":
        stack.append(read(stack.pop() & MASK64, int(args[0])))
    elif name == "DW_OP_dup":
        stack.append(stack[-1])
    elif name == "DW_OP_drop":
        stack.pop()
    elif name == "DW_OP_swap":
        stack[-1], stack[-2] = stack[-2], stack[-1]
    elif name == "DW_OP_over":
        stack.append(stack[-2])
    elif name == "DW_OP_pick":
        stack.append(stack[-1 - int(args[0])])
    elif name == "DW_OP_rot":
        stack[-3], stack[-2], stack[-1] = stack[-1], stack[-3], stack[-2]
    elif name == "DW_OP_neg":
        stack.append(-stack.pop())
    elif name == "DW_OP_not":
        stack.append(~stack.pop())
    elif name == "DW_OP_abs":
        stack.append(abs(signed(stack.pop())))
    elif name == "DW_OP_nop":
        pass
    else:
        return False
    return True
