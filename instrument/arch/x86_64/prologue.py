"""Execute the instruction under a software breakpoint without single-stepping it.

Stepping over an int3 costs a second ptrace stop per hit (restore the byte,
single-step, wait, re-insert). Most breakpoints sit on a function's first
instruction, and function prologues are a handful of instructions with
simple semantics: push a register, endbr64, mov between registers, mov of
an immediate, a rip-relative load. Those are emulated here, exactly, with
no flag changes (none of them writes flags); anything else returns False
and the engine single-steps as usual. The int3 then never leaves memory,
so other threads cannot run past it meanwhile.
"""

from __future__ import annotations

from typing import Callable, MutableMapping

from .machine import MASK64
from .registers import REG64

__all__ = ["ENDBR64", "REG64", "compile_emulation", "emulate"]

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
    if op in (0x89, 0x8B) and w and len(code) > i + 1:
        modrm = code[i + 1]
        mod, reg, rm = modrm >> 6, ((modrm >> 3) & 7) | (r << 3), (modrm & 7) | (b << 3)
        if mod == 3:                                            # mov r64, r64
            src, dst = (reg, rm) if op == 0x89 else (rm, reg)
            return _move(REG64[src], REG64[dst], i + 2)
        if op == 0x8B and mod == 0 and (modrm & 7) == 5 and len(code) >= i + 6:   # mov r64, [rip+disp32]
            return _load_rip_relative(REG64[reg], int.from_bytes(code[i + 2:i + 6], "little", signed=True), i + 6)
    return None


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


def _move(src: str, dst: str, length: int) -> Emulation:
    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        regs[dst] = regs[src]
        regs["rip"] = rip + length
    return run


def _load_rip_relative(dst: str, disp: int, length: int) -> Emulation:
    def run(regs: Regs, rip: int, read: ReadMemory, write: WriteMemory) -> None:
        after = rip + length
        value = int.from_bytes(read((after + disp) & MASK64, 8), "little")
        regs[dst] = value       # after the read: a failed read changes nothing
        regs["rip"] = after
    return run
