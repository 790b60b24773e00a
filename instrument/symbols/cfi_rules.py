"""Applying one row of DWARF call frame information: CFA and register rules, location expressions.

Works on plain inputs (registers by DWARF number, a memory reader), so the
unwinder runs the same under any backend and in unit tests.
"""

from __future__ import annotations

from typing import Any, Mapping

from elftools.dwarf.callframe import CFARule, RegisterRule
from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.structs import DWARFStructs

from ..arch.x86_64 import MASK64 as MASK
from .dwarf_stack import step
from .reader import MEMORY_ERRORS, ReadMemory

# DWARF register numbers of the x86-64 SysV psABI (figure 3.36).
DWARF_REGS: dict[int, str] = {
    0: "rax", 1: "rdx", 2: "rcx", 3: "rbx", 4: "rsi", 5: "rdi", 6: "rbp", 7: "rsp",
    8: "r8", 9: "r9", 10: "r10", 11: "r11", 12: "r12", 13: "r13", 14: "r14", 15: "r15",
    16: "rip",
}
RSP, RBP, RIP = 7, 6, 16
# A callee must preserve these; every other register is unknown in the caller
# unless the CFI row says where it was saved.
CALLEE_SAVED = (3, 6, 12, 13, 14, 15)


class UnwindStop(Exception):
    """Internal: the unwinder cannot go further (unreadable memory, unknown register)."""


class OutermostFrame(UnwindStop):
    """The CFI says this is the first frame of the thread (_start, clone's child): no
    other method should look for a caller, as a stack scan would, slot by slot."""


_EXPR_PARSER = DWARFExprParser(DWARFStructs(little_endian=True, dwarf_format=32, address_size=8))
_EXPR_CACHE: dict[tuple[int, ...], list[Any]] = {}


def read_sized(read_memory: ReadMemory, address: int, size: int) -> int:
    """The little-endian value of `size` bytes at address; UnwindStop when it cannot be read."""
    try:
        data = read_memory(address, size)
    except MEMORY_ERRORS as exc:
        raise UnwindStop(f"cannot read {address:#x}") from exc
    if len(data) != size:
        raise UnwindStop(f"short read at {address:#x}")
    return int.from_bytes(data, "little")


def read_u64(read_memory: ReadMemory, address: int) -> int:
    """The little-endian word at address; UnwindStop when it cannot be read."""
    return read_sized(read_memory, address, 8)


def reg_value(regs: Mapping[int, int], num: int) -> int:
    """Register `num` of a frame; UnwindStop when this frame lost it."""
    if num not in regs:
        raise UnwindStop(f"register {DWARF_REGS.get(num, num)} is unknown in this frame")
    return regs[num]


def eval_expression(expr: Any, regs: Mapping[int, int], read_memory: ReadMemory,
                    push: int | None = None) -> int:
    """Evaluate a DWARF location expression (the subset CFI uses) to a 64-bit value.

    `push` is pushed first: DW_CFA_expression rules start with the CFA on the stack.
    """
    key = tuple(expr)
    ops = _EXPR_CACHE.get(key)
    if ops is None:
        ops = _EXPR_CACHE[key] = _EXPR_PARSER.parse_expr(bytes(key))
    stack: list[int] = [] if push is None else [push]

    def reg(num: int) -> int:
        return reg_value(regs, num)

    def word(address: int, size: int) -> int:
        return read_sized(read_memory, address, size)

    for op in ops:
        name = op.op_name
        try:
            if name == "DW_OP_addr":
                stack.append(op.args[0])
            elif not step(name, op.args, stack, reg, word):
                raise UnwindStop(f"unsupported DWARF op {name} in CFI")
        except (IndexError, ZeroDivisionError) as exc:
            raise UnwindStop(f"bad DWARF expression in CFI ({name}: {exc})") from None
    if not stack:
        raise UnwindStop("empty DWARF expression")
    return stack[-1] & MASK


def eval_cfa(rule: CFARule, regs: Mapping[int, int], read_memory: ReadMemory) -> int:
    """The canonical frame address a CFI row's CFA rule gives."""
    if rule.expr is not None:
        return eval_expression(rule.expr, regs, read_memory)
    if rule.reg is None:
        raise UnwindStop("CFI row without a CFA rule")
    return (reg_value(regs, rule.reg) + (rule.offset or 0)) & MASK


def apply_row(row: Mapping[Any, Any], ra_column: int, regs: Mapping[int, int],
              read_memory: ReadMemory) -> tuple[int, dict[int, int]]:
    """Apply one CFI row: return (CFA, the caller's registers, with its pc as RIP)."""
    cfa = eval_cfa(row["cfa"], regs, read_memory)
    caller: dict[int, int] = {r: regs[r] for r in CALLEE_SAVED if r in regs}
    for reg, rule in row.items():
        if not isinstance(reg, int):
            continue
        if rule.type == RegisterRule.SAME_VALUE:
            value = regs.get(reg)
        else:
            value = _apply_rule(rule, cfa, regs, read_memory)
        if value is None:
            caller.pop(reg, None)
        else:
            caller[reg] = value
    caller[RSP] = cfa
    if ra_column not in caller:
        # DW_CFA_undefined on the return address marks the outermost frame (_start).
        raise OutermostFrame("return address undefined: outermost frame")
    if ra_column != RIP:
        caller[RIP] = caller.pop(ra_column)
    return cfa, caller


def _apply_rule(rule: RegisterRule, cfa: int, regs: Mapping[int, int], read_memory: ReadMemory) -> int | None:
    kind = rule.type
    # What `arg` holds depends on the kind: an offset or register number (int), or
    # the bytes of a DWARF expression (list); pyelftools types it as their union.
    arg: Any = rule.arg
    if kind == RegisterRule.OFFSET:
        return read_u64(read_memory, (cfa + arg) & MASK)
    if kind == RegisterRule.VAL_OFFSET:
        return (cfa + int(arg)) & MASK
    if kind == RegisterRule.REGISTER:
        return regs.get(arg)
    if kind == RegisterRule.EXPRESSION:
        return read_u64(read_memory, eval_expression(arg, regs, read_memory, push=cfa))
    if kind == RegisterRule.VAL_EXPRESSION:
        return eval_expression(arg, regs, read_memory, push=cfa)
    return None  # UNDEFINED / ARCHITECTURAL: unknown in the caller
