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

__all__ = ["ENDBR64", "REG64", "emulate"]

ENDBR64 = b"\xf3\x0f\x1e\xfa"

ReadMemory = Callable[[int, int], bytes]
WriteMemory = Callable[[int, bytes], None]


def emulate(code: bytes, regs: MutableMapping[str, int], read: ReadMemory, write: WriteMemory) -> bool:
    """Run the instruction at regs["rip"] whose bytes start `code`; True if emulated.

    On True, regs (and, for push, memory) are exactly as after the CPU ran it;
    on False nothing was changed."""
    rip = regs["rip"]
    if code[:4] == ENDBR64:
        regs["rip"] = rip + 4
        return True
    if code[:1] == b"\x90":                                   # nop
        regs["rip"] = rip + 1
        return True
    rex = 0
    i = 0
    if code and 0x40 <= code[0] <= 0x4F:
        rex, i = code[0], 1
    if len(code) <= i:
        return False
    op = code[i]
    w, r, b = rex & 8, (rex >> 2) & 1, rex & 1
    if 0x50 <= op <= 0x57 and not w:                            # push r64
        value = regs[REG64[(op - 0x50) | (b << 3)]]
        rsp = (regs["rsp"] - 8) & MASK64
        write(rsp, value.to_bytes(8, "little"))
        regs["rsp"] = rsp
        regs["rip"] = rip + i + 1
        return True
    if 0xB8 <= op <= 0xBF and not w and len(code) >= i + 5:     # mov r32, imm32 (zero-extends)
        regs[REG64[(op - 0xB8) | (b << 3)]] = int.from_bytes(code[i + 1:i + 5], "little")
        regs["rip"] = rip + i + 5
        return True
    if op in (0x89, 0x8B) and w and len(code) > i + 1:
        modrm = code[i + 1]
        mod, reg, rm = modrm >> 6, ((modrm >> 3) & 7) | (r << 3), (modrm & 7) | (b << 3)
        if mod == 3:                                            # mov r64, r64
            src, dst = (reg, rm) if op == 0x89 else (rm, reg)
            regs[REG64[dst]] = regs[REG64[src]]
            regs["rip"] = rip + i + 2
            return True
        if op == 0x8B and mod == 0 and (modrm & 7) == 5 and len(code) >= i + 6:   # mov r64, [rip+disp32]
            disp = int.from_bytes(code[i + 2:i + 6], "little", signed=True)
            after = rip + i + 6
            value = int.from_bytes(read((after + disp) & MASK64, 8), "little")
            regs[REG64[reg]] = value
            regs["rip"] = after
            return True
    return False
