"""Stack unwinding for x86-64 ELF processes: DWARF CFI first, then frame pointers, then a stack scan.

Works on plain inputs (a register mapping, a memory reader, a pc -> module
lookup) so it runs the same under any backend and in unit tests.
"""

from __future__ import annotations

import io
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

import capstone

from elftools.dwarf.callframe import FDE, CallFrameInfo, CFARule, RegisterRule
from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.structs import DWARFStructs
from elftools.elf.elffile import ELFFile

from ..errors import InstrumentError, TargetError
from .elf import ImageError, open_image
from .filecache import FileCache

ReadMemory = Callable[[int, int], bytes]
FindModule = Callable[[int], "tuple[str, int] | None"]

# What a memory reader may raise for an unreadable address: the backends raise
# DebuggerError, /proc/PID/mem raises OSError, a fake reader may raise ValueError.
MEMORY_ERRORS: tuple[type[BaseException], ...] = (OSError, InstrumentError, ValueError, struct.error)

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


class UnwindStop(Exception):
    """Internal: the unwinder cannot go further (unreadable memory, unknown register)."""


# -- CFI index of one ELF file --

@dataclass
class _FdeSource:
    """The FDEs of one CFI section, sorted by start; FDEs parsed only when looked up."""

    cfi: CallFrameInfo
    starts: list[int]
    offsets: list[int]                       # section offsets of the FDEs
    ends: list[int] | None = None            # known when the whole section was parsed
    parsed: dict[int, FDE] = field(default_factory=dict)

    def find(self, pc: int) -> FDE | None:
        i = bisect_right(self.starts, pc) - 1
        if i < 0:
            return None
        if self.ends is not None and pc >= self.ends[i]:
            return None
        fde = self.parsed.get(self.offsets[i])
        if fde is None:
            # pyelftools has no public "parse the entry at this offset"; the
            # whole-section parse costs ~0.5 s for libc, so use its internal one.
            entry = self.cfi._parse_entry_at(self.offsets[i])
            if not isinstance(entry, FDE):
                return None
            fde = self.parsed[self.offsets[i]] = entry
        start = fde["initial_location"]
        return fde if start <= pc < start + fde["address_range"] else None


class ModuleCFI:
    """The call frame information of one ELF file, indexed by link-time address."""

    def __init__(self, path: str) -> None:
        self.sources: list[_FdeSource] = []
        self._rows: dict[int, tuple[list[int], list[dict[Any, Any]]]] = {}
        with open(path, "rb") as f:
            elf = ELFFile(f)
            structs = DWARFStructs(little_endian=elf.little_endian, dwarf_format=32,
                                   address_size=elf.elfclass // 8)
            eh = elf.get_section_by_name(".eh_frame")
            if eh is not None and eh["sh_type"] != "SHT_NOBITS" and eh["sh_size"]:
                cfi = CallFrameInfo(io.BytesIO(eh.data()), eh["sh_size"], eh["sh_addr"], structs,
                                    for_eh_frame=True)
                hdr = elf.get_section_by_name(".eh_frame_hdr")
                source = _hdr_source(cfi, hdr.data(), hdr["sh_addr"], eh["sh_addr"]) if hdr else None
                self.sources.append(source or _parsed_source(cfi))
            dbg = elf.get_section_by_name(".debug_frame")
            if dbg is not None and dbg["sh_size"]:
                data = dbg.data()
                cfi = CallFrameInfo(io.BytesIO(data), len(data), 0, structs, for_eh_frame=False)
                self.sources.append(_parsed_source(cfi))

    def find_fde(self, pc: int) -> FDE | None:
        """The FDE covering link-time address pc, .eh_frame first."""
        for source in self.sources:
            fde = source.find(pc)
            if fde is not None:
                return fde
        return None

    def row(self, pc: int) -> tuple[dict[Any, Any], int] | None:
        """The decoded CFI row for pc and the return-address column, or None."""
        fde = self.find_fde(pc)
        if fde is None:
            return None
        cached = self._rows.get(id(fde))
        if cached is None:
            table = fde.get_decoded().table
            cached = self._rows[id(fde)] = ([r["pc"] for r in table], table)
        pcs, rows = cached
        i = bisect_right(pcs, pc) - 1
        if i < 0:
            return None
        return rows[i], fde.cie["return_address_register"]


def _hdr_source(cfi: CallFrameInfo, hdr: bytes, hdr_addr: int, eh_addr: int) -> _FdeSource | None:
    """Read .eh_frame_hdr's binary search table (the one the runtime unwinder uses)."""
    if len(hdr) < 12:
        return None
    version, ptr_enc, count_enc, table_enc = hdr[0], hdr[1], hdr[2], hdr[3]
    # Every toolchain we know emits pcrel|sdata4, udata4, datarel|sdata4; for
    # anything else parse the whole section instead.
    if (version, ptr_enc, count_enc, table_enc) != (1, 0x1B, 0x03, 0x3B):
        return None
    (count,) = struct.unpack_from("<I", hdr, 8)
    if len(hdr) < 12 + 8 * count:
        return None
    pairs = struct.unpack_from(f"<{2 * count}i", hdr, 12)
    starts = [hdr_addr + pairs[2 * i] for i in range(count)]
    offsets = [hdr_addr + pairs[2 * i + 1] - eh_addr for i in range(count)]
    return _FdeSource(cfi, starts, offsets)


def _parsed_source(cfi: CallFrameInfo) -> _FdeSource:
    """Parse a whole CFI section (no search table) and sort its FDEs."""
    fdes = sorted((e for e in cfi.get_entries() if isinstance(e, FDE)), key=lambda e: e["initial_location"])
    source = _FdeSource(cfi, [e["initial_location"] for e in fdes], [e.offset for e in fdes],
                        [e["initial_location"] + e["address_range"] for e in fdes])
    source.parsed = {e.offset: e for e in fdes}
    return source


def _parse_cfi(real: str) -> ModuleCFI | None:
    try:
        return ModuleCFI(real)
    except Exception:  # noqa: BLE001
        # pyelftools raises a zoo (ELFError, DWARFError, construct errors,
        # asserts) on odd files; an unparsable module just has no CFI.
        return None


_cfi_cache: FileCache[ModuleCFI | None] = FileCache(_parse_cfi)


def module_cfi(path: str) -> ModuleCFI | None:
    """The CFI of an ELF file, parsed once per file version; None if unreadable."""
    try:
        return _cfi_cache.get(path)
    except TargetError:
        return None


# -- Rule evaluation --

_EXPR_PARSER = DWARFExprParser(DWARFStructs(little_endian=True, dwarf_format=32, address_size=8))
_EXPR_CACHE: dict[tuple[int, ...], list[Any]] = {}
_MASK = (1 << 64) - 1


def _read_u64(read_memory: ReadMemory, address: int) -> int:
    try:
        data = read_memory(address, 8)
    except MEMORY_ERRORS as exc:
        raise UnwindStop(f"cannot read {address:#x}") from exc
    if len(data) != 8:
        raise UnwindStop(f"short read at {address:#x}")
    return int.from_bytes(data, "little")


def _try_read(read_memory: ReadMemory, address: int, size: int) -> bytes | None:
    try:
        return read_memory(address, size)
    except MEMORY_ERRORS:
        return None


def read_available(read_memory: ReadMemory, address: int, size: int) -> bytes:
    """Read up to `size` bytes at address, stopping early where memory stops being readable."""
    whole = _try_read(read_memory, address, size)
    if whole is not None:
        return whole
    # The window crosses into unreadable memory (the end of a mapping, or the
    # end of a fake reader's buffer): bisect for the readable prefix.
    readable, unreadable = 0, size
    while unreadable - readable > 1:
        middle = (readable + unreadable) // 2
        if _try_read(read_memory, address, middle) is not None:
            readable = middle
        else:
            unreadable = middle
    return (_try_read(read_memory, address, readable) or b"") if readable else b""


def _reg(regs: Mapping[int, int], num: int) -> int:
    if num not in regs:
        raise UnwindStop(f"register {DWARF_REGS.get(num, num)} is unknown in this frame")
    return regs[num]


_BINARY_OPS: dict[str, Callable[[int, int], int]] = {
    "DW_OP_plus": lambda a, b: a + b, "DW_OP_minus": lambda a, b: a - b,
    "DW_OP_mul": lambda a, b: a * b, "DW_OP_and": lambda a, b: a & b,
    "DW_OP_or": lambda a, b: a | b, "DW_OP_xor": lambda a, b: a ^ b,
    "DW_OP_shl": lambda a, b: a << b, "DW_OP_shr": lambda a, b: a >> b,
    "DW_OP_ge": lambda a, b: int(a >= b), "DW_OP_gt": lambda a, b: int(a > b),
    "DW_OP_le": lambda a, b: int(a <= b), "DW_OP_lt": lambda a, b: int(a < b),
    "DW_OP_eq": lambda a, b: int(a == b), "DW_OP_ne": lambda a, b: int(a != b),
}


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
    for op in ops:
        name = op.op_name
        if name.startswith("DW_OP_breg"):
            stack.append(_reg(regs, int(name[10:])) + op.args[0])
        elif name.startswith("DW_OP_lit"):
            stack.append(int(name[9:]))
        elif name.startswith("DW_OP_const") or name == "DW_OP_addr":
            stack.append(op.args[0])
        elif name == "DW_OP_plus_uconst":
            stack.append(stack.pop() + op.args[0])
        elif name in _BINARY_OPS:
            b, a = stack.pop(), stack.pop()
            stack.append(_BINARY_OPS[name](a, b))
        elif name == "DW_OP_deref":
            stack.append(_read_u64(read_memory, stack.pop() & _MASK))
        elif name == "DW_OP_dup":
            stack.append(stack[-1])
        elif name == "DW_OP_drop":
            stack.pop()
        elif name == "DW_OP_swap":
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif name == "DW_OP_over":
            stack.append(stack[-2])
        elif name == "DW_OP_neg":
            stack.append(-stack.pop())
        elif name == "DW_OP_not":
            stack.append(~stack.pop())
        else:
            raise UnwindStop(f"unsupported DWARF op {name} in CFI")
    if not stack:
        raise UnwindStop("empty DWARF expression")
    return stack[-1] & _MASK


def eval_cfa(rule: CFARule, regs: Mapping[int, int], read_memory: ReadMemory) -> int:
    """The canonical frame address a CFI row's CFA rule gives."""
    if rule.expr is not None:
        return eval_expression(rule.expr, regs, read_memory)
    if rule.reg is None:
        raise UnwindStop("CFI row without a CFA rule")
    return (_reg(regs, rule.reg) + (rule.offset or 0)) & _MASK


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
        raise UnwindStop("return address undefined: outermost frame")
    if ra_column != RIP:
        caller[RIP] = caller.pop(ra_column)
    return cfa, caller


def _apply_rule(rule: RegisterRule, cfa: int, regs: Mapping[int, int], read_memory: ReadMemory) -> int | None:
    kind = rule.type
    if kind == RegisterRule.OFFSET:
        return _read_u64(read_memory, (cfa + rule.arg) & _MASK)
    if kind == RegisterRule.VAL_OFFSET:
        return (cfa + rule.arg) & _MASK
    if kind == RegisterRule.REGISTER:
        return regs.get(rule.arg)
    if kind == RegisterRule.EXPRESSION:
        return _read_u64(read_memory, eval_expression(rule.arg, regs, read_memory, push=cfa))
    if kind == RegisterRule.VAL_EXPRESSION:
        return eval_expression(rule.arg, regs, read_memory, push=cfa)
    return None  # UNDEFINED / ARCHITECTURAL: unknown in the caller


# -- Stepping from one frame to its caller --

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


@lru_cache(maxsize=1)
def _decoder() -> capstone.Cs:
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def _ends_with_call(code: bytes) -> bool:
    """Can the last bytes of `code` be a call (e8 rel32, or ff /2 with 2-7 bytes)?"""
    for length in (5, 2, 3, 6, 7, 4):
        insn = next(_decoder().disasm(code[-length:], 0, 1), None)
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
    sp = _reg(state.regs, RSP)
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
        saved_rbp = _read_u64(ctx.read_memory, rbp)
        ret = _read_u64(ctx.read_memory, rbp + 8)
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
    return {num: regs[name] & _MASK for num, name in DWARF_REGS.items() if name in regs}


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
