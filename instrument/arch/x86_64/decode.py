"""The one capstone memory-access decoder: what memory an x86-64 instruction touches, given its registers.

Importing this module imports capstone (tens of milliseconds): callers on a
start-up path import it lazily, where a decode is first needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import capstone  # capstone ships no type information (pyproject: [[tool.mypy.overrides]])
from capstone import x86

from ...events import Access
from .machine import MASK64, MAX_INSN
from .registers import read_register

__all__ = ["MAX_INSN", "MemoryOperand", "STACK_READS", "STACK_WRITES", "classify_access", "decode",
           "effective_address", "engine", "memory_operands", "access_of",
           "register_operands", "register_value"]

# Mnemonics whose stack operand capstone does not list among the operands.
STACK_WRITES = ("push", "call")
STACK_READS = ("pop", "ret", "leave")
_CACHE_LIMIT = 4096
_decoded: dict[tuple[int, bytes], Any] = {}


@lru_cache(maxsize=2)
def engine(detail: bool = False) -> Any:
    """A shared 64-bit capstone engine (building one costs more than disassembling a window)."""
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.detail = detail
    return cs


def decode(code: bytes, pc: int) -> Any | None:
    """The instruction at `pc` whose bytes start `code`, with operand details; None if
    `code` does not start with one. Decodings are kept: a watched access or a crash
    site tends to fault again and again at the same instruction."""
    key = (pc, code)
    insn = _decoded.get(key)
    if insn is None:
        insn = next(iter(engine(detail=True).disasm(code, pc, 1)), None)
        if insn is not None and len(_decoded) < _CACHE_LIMIT:
            _decoded[key] = insn
    return insn


def register_value(name: str, regs: Mapping[str, int], insn: Any) -> int:
    """Register `name` (capstone's spelling) as an operand sees it; 0 when `regs` lacks it."""
    if name == "rip":
        return int(insn.address + insn.size)    # rip-relative operands use the next pc
    try:
        return read_register(regs, name)
    except KeyError:
        return 0


def effective_address(insn: Any, op: Any, regs: Mapping[str, int]) -> int:
    """base + index*scale + disp (+ fs/gs base) of a capstone memory operand."""
    mem = op.mem
    address = int(mem.disp)
    if mem.base:
        address += register_value(insn.reg_name(mem.base), regs, insn)
    if mem.index:
        address += register_value(insn.reg_name(mem.index), regs, insn) * mem.scale
    if mem.segment in (x86.X86_REG_FS, x86.X86_REG_GS):
        address += regs.get("fs_base" if mem.segment == x86.X86_REG_FS else "gs_base", 0)
    return address & MASK64


def access_of(op: Any) -> Access:
    """READ or WRITE; a read-modify-write operand (`add [x], 1`) counts as a write."""
    return Access.WRITE if op.access & capstone.CS_AC_WRITE else Access.READ


@dataclass(frozen=True)
class MemoryOperand:
    """One explicit memory operand of a decoded instruction."""

    address: int          # its effective address under the registers given
    size: int             # bytes, as capstone sizes it (0 for some: xsave areas, gathers)
    access: Access        # READ or WRITE (read-modify-write: WRITE)
    op: Any               # the capstone operand


def memory_operands(insn: Any, regs: Mapping[str, int]) -> list[MemoryOperand]:
    """The explicit memory operands of `insn`, in operand order (implicit stack
    operands of push, call, pop and ret are not among them)."""
    return [MemoryOperand(effective_address(insn, op, regs), int(op.size), access_of(op), op)
            for op in insn.operands if op.type == x86.X86_OP_MEM]


def register_operands(insn: Any) -> list[str]:
    """The names of the explicit register operands of `insn`, in operand order."""
    return [insn.reg_name(op.reg) for op in insn.operands if op.type == x86.X86_OP_REG]


def classify_access(code: bytes, pc: int, regs: Mapping[str, int], fault: int) -> tuple[Access, int, int]:
    """(access, lo, hi): what the instruction at pc (bytes `code`) did to the faulting
    address `fault`, and the span [lo, hi) of that operand.

    A fault at pc itself is an execute. Implicit stack operands go by mnemonic,
    as 8-byte accesses. Operands capstone sizes oddly are judged by whether the
    instruction writes memory at all."""
    if fault == pc:
        return Access.EXECUTE, fault, fault + 1
    insn = decode(code, pc)
    if insn is None:
        return Access.READ, fault, fault + 1
    operands = memory_operands(insn, regs)
    for operand in operands:
        lo, hi = operand.address, operand.address + max(operand.size, 1)
        if lo <= fault < hi:
            return operand.access, lo, hi
    mnemonic = insn.mnemonic
    if mnemonic.startswith(STACK_WRITES):
        return Access.WRITE, fault, fault + 8
    if mnemonic.startswith(STACK_READS):
        return Access.READ, fault, fault + 8
    writes = any(operand.access == Access.WRITE for operand in operands)
    return (Access.WRITE if writes else Access.READ), fault, fault + 1
