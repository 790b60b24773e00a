"""Stack unwinding for x86-64 ELF processes: DWARF CFI first, then frame pointers, then a stack scan.

Works on plain inputs (a register mapping, a memory reader, a pc -> module
lookup) so it runs the same under any backend and in unit tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .cfi import module_cfi
from .elf import ImageError, open_image
from ..arch.x86_64 import MASK64 as MASK
from ..arch.x86_64.decode import engine
from .cfi_rules import (CALLEE_SAVED, DWARF_REGS, RBP, RIP, RSP, OutermostFrame, UnwindStop, apply_row,
                        read_u64, reg_value)
from .reader import MEMORY_ERRORS, ReadMemory, read_available

FindModule = Callable[[int], "tuple[str, int] | None"]

# `mov rax, 15 (rt_sigreturn); syscall`: glibc's __restore_rt. Its FDE is
# hand-written (and missing on some builds), so we recognise the code instead.
SIGRETURN_CODE = bytes.fromhex("48c7c00f0000000f05")
# The kernel's struct rt_sigframe is {pretcode, ucontext, siginfo}; the
# handler's `ret` popped pretcode, so at __restore_rt rsp points at the
# ucontext, whose uc_mcontext follows uc_flags, uc_link and a 24-byte stack_t.
UC_MCONTEXT = 40
# mcontext gregs order (REG_R8 .. REG_RIP) mapped to DWARF numbers.
SIGCONTEXT_GREGS = (8, 9, 10, 11, 12, 13, 14, 15, 5, 4, 6, 3, 1, 0, 2, 7, 16)

SCAN_WORDS = 512          # how far (in 8-byte slots) a stack scan looks
MAX_FP_STEP = 16 << 20    # a saved rbp further than this from rsp is not a frame


@dataclass(frozen=True)
class Frame:
    """One frame of a backtrace: its pc, its canonical frame address, how it was found.

    method: "context" (frame 0, or a frame restored from a signal context),
    "cfi", "fp" (rbp chain) or "scan" (a return address found on the stack).
    """

    pc: int
    cfa: int | None
    method: str

    @property
    def lookup_pc(self) -> int:
        """The address to symbolize: a return address (pc-1) lies in the call, not after it.

        A noreturn call (abort, __stack_chk_fail) is often a function's last
        instruction, so its return address is already the next function's start.
        """
        return self.pc if self.method == "context" else self.pc - 1


@dataclass
class _State:
    """A frame being unwound: its registers (DWARF numbers) and how we got here."""

    regs: dict[int, int]
    method: str
    exact_pc: bool      # pc is the faulting/interrupted instruction, not a return address


@dataclass
class _Context:
    read_memory: ReadMemory
    find_module: FindModule
    modules: dict[int, tuple[str, int] | None] = field(default_factory=dict)

    def module(self, pc: int) -> tuple[str, int] | None:
        # find_module may parse /proc/PID/maps; the same pcs recur within one unwind.
        if pc not in self.modules:
            self.modules[pc] = self.find_module(pc)
        return self.modules[pc]

    def is_return_site(self, value: int) -> bool:
        """Does `value` point just after a call instruction in the code of a known module?"""
        module = self.module(value)
        if value < 8 or module is None or not _in_code(module, value):
            return False
        try:
            code = self.read_memory(value - 7, 7)
        except MEMORY_ERRORS:
            return False
        return _ends_with_call(code)


def _in_code(module: tuple[str, int], value: int) -> bool:
    """Is `value` in an executable segment of `module` (path, load bias)? A pointer into
    data whose preceding bytes happen to decode as a call (they are often pointers
    themselves, so ASLR decides) is no return address. A file that does not parse as
    ELF (the vDSO, a PE image) cannot tell: yes."""
    path, bias = module
    try:
        image = open_image(path)
    except ImageError:
        return True
    return not image.code_ranges or image.is_code(value - bias)


def _ends_with_call(code: bytes) -> bool:
    """Can the last bytes of `code` be a call (e8 rel32, or ff /2 with 2-7 bytes)?"""
    for length in (5, 2, 3, 6, 7, 4):
        insn = next(engine().disasm(code[-length:], 0, 1), None)
        if insn is not None and insn.size == length and insn.mnemonic == "call":
            return True
    return False


def _sigreturn_step(state: _State, ctx: _Context) -> tuple[int, _State] | None:
    """At __restore_rt: the caller is the interrupted code, its registers in the ucontext."""
    pc = state.regs[RIP]
    try:
        if ctx.read_memory(pc, len(SIGRETURN_CODE)) != SIGRETURN_CODE:
            return None
    except MEMORY_ERRORS:
        return None
    sp = reg_value(state.regs, RSP)
    gregs_at = sp + UC_MCONTEXT
    try:
        raw = ctx.read_memory(gregs_at, 8 * len(SIGCONTEXT_GREGS))
    except MEMORY_ERRORS as exc:
        raise UnwindStop("cannot read the signal frame") from exc
    values = struct.unpack(f"<{len(SIGCONTEXT_GREGS)}Q", raw)
    regs = dict(zip(SIGCONTEXT_GREGS, values))
    # The interrupted pc is the instruction to re-run, not a return address.
    return sp, _State(regs, "context", exact_pc=True)


def _cfi_step(state: _State, ctx: _Context) -> tuple[int, _State] | None:
    pc = state.regs[RIP]
    # A return address points after the call; the call itself (pc-1) is what
    # the CFI of this frame describes (the call may be the function's last byte).
    lookup = pc if state.exact_pc else pc - 1
    module = ctx.module(lookup)
    if module is None:
        return None
    path, bias = module
    cfi = module_cfi(path)
    found = cfi.row(lookup - bias) if cfi is not None else None
    if found is None:
        return None
    row, ra_column = found
    regs = dict(state.regs)
    regs[RIP] = lookup
    cfa, caller = apply_row(row, ra_column, regs, ctx.read_memory)
    return cfa, _State(caller, "cfi", exact_pc=False)


def _fp_step(state: _State, ctx: _Context) -> tuple[int, _State] | None:
    """Follow the rbp chain: [rbp] is the caller's rbp, [rbp+8] the return address."""
    rbp, sp = state.regs.get(RBP), state.regs.get(RSP)
    if rbp is None or sp is None or rbp % 8 or not sp <= rbp < sp + MAX_FP_STEP:
        return None
    try:
        saved_rbp = read_u64(ctx.read_memory, rbp)
        ret = read_u64(ctx.read_memory, rbp + 8)
    except UnwindStop:
        return None
    if ctx.module(ret) is None or (saved_rbp and saved_rbp <= rbp):
        return None
    return rbp + 16, _State({RBP: saved_rbp, RSP: rbp + 16, RIP: ret}, "fp", exact_pc=False)


def _scan_step(state: _State, ctx: _Context) -> tuple[int, _State] | None:
    """Find the nearest stack slot holding a return address into a known module."""
    sp = state.regs.get(RSP)
    if sp is None:
        return None
    data = read_available(ctx.read_memory, sp, 8 * SCAN_WORDS)   # the stack may end sooner
    for i in range(len(data) // 8):
        (value,) = struct.unpack_from("<Q", data, 8 * i)
        if ctx.is_return_site(value):
            slot = sp + 8 * i
            regs = {r: v for r, v in state.regs.items() if r in CALLEE_SAVED}
            regs.update({RSP: slot + 8, RIP: value})
            return slot + 8, _State(regs, "scan", exact_pc=False)
    return None


def _step(state: _State, ctx: _Context) -> tuple[int, _State] | None:
    """One frame up, by the best method that works here; None at the end of the stack."""
    found = _sigreturn_step(state, ctx)
    if found is not None:
        return found
    try:
        found = _cfi_step(state, ctx)
    except OutermostFrame:
        return None
    except UnwindStop:
        # CFI exists but needs a register we lost (after a scan step, say).
        found = None
    if found is not None:
        return found
    if ctx.module(state.regs[RIP]) is None:
        # pc outside every module: most likely a call through a bad pointer,
        # so the return address is still at [rsp] and rbp is the caller's.
        return _scan_step(state, ctx) or _fp_step(state, ctx)
    return _fp_step(state, ctx) or _scan_step(state, ctx)


def _initial_regs(regs: Mapping[str, int]) -> dict[int, int]:
    return {num: regs[name] & MASK for num, name in DWARF_REGS.items() if name in regs}


def unwind(regs: Mapping[str, int], read_memory: ReadMemory, find_module: FindModule,
           depth: int = 32) -> list[Frame]:
    """The call stack of a stopped thread, innermost frame first.

    find_module maps a runtime pc to (file path, load bias) or None. Stops at
    pc 0, at `depth` frames, when the stack pointer stops increasing, or when
    memory cannot be read.
    """
    ctx = _Context(read_memory, find_module)
    state = _State(_initial_regs(regs), "context", exact_pc=True)
    frames: list[Frame] = []
    while len(frames) < depth and state.regs.get(RIP):
        try:
            found = _step(state, ctx)
        except UnwindStop:
            found = None
        frames.append(Frame(state.regs[RIP], found[0] if found else None, state.method))
        if found is None:
            break
        caller = found[1]
        # A frame restored from a signal context may live on another stack
        # (sigaltstack); everywhere else the stack must grow towards the caller.
        if caller.method != "context" and caller.regs.get(RSP, 0) <= state.regs.get(RSP, 0):
            break
        state = caller
    return frames
