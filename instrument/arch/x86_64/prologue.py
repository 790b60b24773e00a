"""Execute the instruction under a software breakpoint without single-stepping it.

Stepping over an int3 costs a second ptrace stop per hit (restore the byte,
single-step, wait, re-insert), and the other threads are held meanwhile. Most
breakpoints sit on a function's first instruction, and function entries are a
handful of instructions with simple semantics: push a register, endbr64, mov
between registers, mov of an immediate, lea or a load rip-relative, and the
flag-setting ones a function starts with (sub rsp, imm; test rdi, rdi; cmp of a
global with 0; xor eax, eax). Those are emulated here, exactly, flags
included: CF, PF, AF, ZF, SF and OF as the CPU sets them; for AND, OR, XOR and
TEST, AF (which the SDM leaves undefined) cleared, as the CPU does
(tests/unit/test_emulate.py runs each form on the CPU and compares). Anything else returns None and the engine
single-steps as usual. The int3 then never leaves memory, so other threads
cannot run past it meanwhile. (Of libc's exported functions 59% started with an
instruction emulated before the flag-setting ones came, 86% after.)
"""

from __future__ import annotations

from typing import Callable, MutableMapping

from .machine import MASK64
from .registers import REG64

__all__ = ["ENDBR64", "REG64", "STATUS_FLAGS", "alu_result", "compile_emulation", "emulate"]

ENDBR64 = b"\xf3\x0f\x1e\xfa"

ReadMemory = Callable[[int, int], bytes]
WriteMemory = Callable[[int, bytes], None]


Regs = MutableMapping[str, int]
Emulation = Callable[[Regs, int, ReadMemory, WriteMemory], None]


def emulate(code: bytes, regs: Regs, read: ReadMemory, write: WriteMemory) -> bool:
    """Run the instruction at regs["rip"] whose bytes start `code`; True if emulated.

    On True, regs (and, for push, memory) are exactly as after the CPU ran it;
    on False nothing was changed."""
    run = compile_emulation(code)
    if run is None:
        return False
    run(regs, regs["rip"], read, write)
    return True


def compile_emulation(code: bytes) -> Emulation | None:
    """The instruction whose bytes start `code`, decoded once into a function
    `run(regs, rip, read, write)` that does what the CPU would; None when it is not
    one we emulate. A breakpoint's site is decoded at its first hit, not at every hit
    (cProfile: the decode was the largest Python cost of a stopped soft hit after
    the hit bookkeeping)."""
    if code[:4] == ENDBR64:
        return _advance(4)
    if code[:1] == b"\x90":                                   # nop
        return _advance(1)
    rex = 0
    i = 0
    if code and 0x40 <= code[0] <= 0x4F:
        rex, i = code[0], 1
    if len(code) <= i:
        return None
    op = code[i]
    w, r, b = rex & 8, (rex >> 2) & 1, rex & 1
    if 0x50 <= op <= 0x57 and not w:                            # push r64
        return _push(REG64[(op - 0x50) | (b << 3)], i + 1)
    if 0xB8 <= op <= 0xBF and not w and len(code) >= i + 5:     # mov r32, imm32 (zero-extends)
        return _set(REG64[(op - 0xB8) | (b << 3)], int.from_bytes(code[i + 1:i + 5], "little"), i + 5)
    if len(code) <= i + 1:
        return None
    modrm = code[i + 1]
    mod, reg, rm = modrm >> 6, ((modrm >> 3) & 7) | (r << 3), (modrm & 7) | (b << 3)
    width = 64 if w else 32
    rip_relative = mod == 0 and (modrm & 7) == 5
    if op in (0x89, 0x8B):
        if mod == 3:                                            # mov r64, r64 / mov r32, r32
            src, dst = (reg, rm) if op == 0x89 else (rm, reg)
            return _move(REG64[src], REG64[dst], i + 2, width)
        if op == 0x8B and w and rip_relative and len(code) >= i + 6:   # mov r64, [rip+disp32]
            return _load_rip_relative(REG64[reg], _disp32(code, i + 2), i + 6)
        return None
    if op == 0x8D and w and rip_relative and len(code) >= i + 6:      # lea r64, [rip+disp32]
        return _lea_rip_relative(REG64[reg], _disp32(code, i + 2), i + 6)
    if op in _ALU_RR and mod == 3:                              # add/or/and/sub/xor/cmp r, r
        kind, to_rm = _ALU_RR[op]
        dst, src = (rm, reg) if to_rm else (reg, rm)
        return _alu(kind, REG64[dst], REG64[src], None, i + 2, width)
    if op == 0x85 and mod == 3:                                 # test r/m, r
        return _alu(_TEST, REG64[rm], REG64[reg], None, i + 2, width)
    if op in (0x81, 0x83):                                      # group 1: op r/m, imm
        operation = _GROUP1.get((modrm >> 3) & 7)
        size = 4 if op == 0x81 else 1
        if operation is None:
            return None
        if mod == 3 and len(code) >= i + 2 + size:
            imm = int.from_bytes(code[i + 2:i + 2 + size], "little", signed=True)
            return _alu(operation, REG64[rm], None, imm, i + 2 + size, width)
        if operation == _CMP and rip_relative and len(code) >= i + 6 + size:      # cmp [rip+disp32], imm
            imm = int.from_bytes(code[i + 6:i + 6 + size], "little", signed=True)
            return _compare_rip_relative(_disp32(code, i + 2), imm, i + 6 + size, width)
        return None
    if op == 0x80 and not rex and rip_relative and (modrm >> 3) & 7 == 7 and len(code) >= i + 7:
        return _compare_rip_relative(_disp32(code, i + 2), code[i + 6], i + 7, 8)    # cmp byte [rip+disp32], imm8
    return None


def _disp32(code: bytes, at: int) -> int:
    return int.from_bytes(code[at:at + 4], "little", signed=True)


# -- flags ---------------------------------------------------------------------------
CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
STATUS_FLAGS = CF | PF | AF | ZF | SF | OF
_PARITY = tuple(PF if bin(n).count("1") % 2 == 0 else 0 for n in range(256))    # PF: even low byte

_ADD, _OR, _AND, _SUB, _XOR, _CMP, _TEST = "add", "or", "and", "sub", "xor", "cmp", "test"
# opcode -> (operation, destination is r/m): the register-register forms of the ALU ops
# (adc and sbb, which read CF, are left to single-step).
_ALU_RR = {0x01: (_ADD, True), 0x03: (_ADD, False), 0x09: (_OR, True), 0x0B: (_OR, False),
           0x21: (_AND, True), 0x23: (_AND, False), 0x29: (_SUB, True), 0x2B: (_SUB, False),
           0x31: (_XOR, True), 0x33: (_XOR, False), 0x39: (_CMP, True), 0x3B: (_CMP, False)}
_GROUP1 = {0: _ADD, 1: _OR, 4: _AND, 5: _SUB, 6: _XOR, 7: _CMP}      # the /reg of 81 and 83
_WRITES = frozenset({_ADD, _OR, _AND, _SUB, _XOR})


def alu_result(kind: str, a: int, b: int, width: int) -> tuple[int, int]:
    """(result, status flags) of `a kind b` on `width`-bit operands (already cut to width)."""
    mask = (1 << width) - 1
    top = width - 1
    if kind == _ADD or kind == _SUB or kind == _CMP:
        if kind == _ADD:
            full = a + b
            carry, overflow = full > mask, ~(a ^ b) & (a ^ full)
        else:
            full = a - b
            carry, overflow = a < b, (a ^ b) & (a ^ full)
        result = full & mask
        flags = (CF if carry else 0) | ((a ^ b ^ result) & AF) | (OF if overflow >> top & 1 else 0)
    else:
        result = a & b if kind == _AND or kind == _TEST else a | b if kind == _OR else a ^ b
        flags = 0                   # CF = OF = 0; AF cleared (see the module docstring)
    flags |= _PARITY[result & 0xFF] | (ZF if result == 0 else 0) | (SF if result >> top & 1 else 0)
    return result, flags


def _advance(length: int) -> Emulation:
    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        regs["rip"] = rip + length
    return run


def _push(name: str, length: int) -> Emulation:
    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        rsp = (regs["rsp"] - 8) & MASK64
        write(rsp, regs[name].to_bytes(8, "little"))
        regs["rsp"] = rsp
        regs["rip"] = rip + length
    return run


def _set(name: str, value: int, length: int) -> Emulation:
    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        regs[name] = value
        regs["rip"] = rip + length
    return run


def _move(src: str, dst: str, length: int, width: int = 64) -> Emulation:
    mask = MASK64 if width == 64 else 0xFFFFFFFF      # a 32-bit mov zero-extends

    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        regs[dst] = regs[src] & mask
        regs["rip"] = rip + length
    return run


def _alu(kind: str, dst: str, src: str | None, imm: int | None, length: int, width: int) -> Emulation:
    """`kind dst, src` or `kind dst, imm` (imm sign-extended to the operand size); a
    32-bit result is zero-extended into the 64-bit register, as the CPU does."""
    mask = (1 << width) - 1
    writes = kind in _WRITES
    b_imm = (imm & mask) if imm is not None else 0

    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        a = regs[dst] & mask
        b = regs[src] & mask if src is not None else b_imm
        result, flags = alu_result(kind, a, b, width)
        if writes:
            regs[dst] = result
        regs["eflags"] = (regs["eflags"] & ~STATUS_FLAGS) | flags
        regs["rip"] = rip + length
    return run


def _compare_rip_relative(disp: int, imm: int, length: int, width: int) -> Emulation:
    """cmp of the `width`-bit value at [rip+disp] with imm (a global compared at entry)."""
    mask = (1 << width) - 1
    b = imm & mask

    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        after = rip + length
        a = int.from_bytes(read((after + disp) & MASK64, width // 8), "little")
        _, flags = alu_result(_CMP, a, b, width)
        regs["eflags"] = (regs["eflags"] & ~STATUS_FLAGS) | flags      # after the read: a failed read changes nothing
        regs["rip"] = after
    return run


def _lea_rip_relative(dst: str, disp: int, length: int) -> Emulation:
    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        after = rip + length
        regs[dst] = (after + disp) & MASK64
        regs["rip"] = after
    return run


def _load_rip_relative(dst: str, disp: int, length: int) -> Emulation:
    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        after = rip + length
        value = int.from_bytes(read((after + disp) & MASK64, 8), "little")
        regs[dst] = value       # after the read: a failed read changes nothing
        regs["rip"] = after
    return run
