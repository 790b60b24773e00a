"""Exception analysis of a crash: access kind, real fault address, faulting instruction, refined code."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from ..arch.x86_64 import MASK64, MAX_INSN, is_canonical
from ..arch.x86_64.decode import decode, memory_operands, register_operands, register_value
from ..events import Access, ExceptionCode, ExceptionInfo, exception_name
from ..symbols.reader import MEMORY_ERRORS, read_available

__all__ = ["analyze", "bare_symbol", "is_canonical", "operand_access", "refine"]

ReadMemory = Callable[[int, int], bytes]

SI_KERNEL = 0x80           # si_code of a #GP: the kernel reports si_addr 0
STACK_SLACK = 64 << 10     # a fault this close to rsp is the stack running out
STACK_GUARD_GAP = 1 << 20  # Linux keeps 256 pages unmapped below a growing stack

# Where glibc ends up when its own checks abort the process.
STACK_PROTECTOR = {"__stack_chk_fail", "__stack_chk_fail_local"}
FORTIFY = {"__fortify_fail", "__chk_fail"}
# A fortified function is named __NAME_chk (__printf_chk, __memcpy_chk, __read_chk). Not
# all of them end in __chk_fail: a %n in a writable format aborts through __libc_fatal.
# Under one of them an abort is the check firing (CASR's SafeFunctionCheck: `_chk()`).
FORTIFIED = re.compile(r"^__\w+_chk$")
HEAP_REPORTERS = {"malloc_printerr", "__malloc_assert"}
# Public allocator entry points: an abort() under one of them is glibc's heap
# consistency check firing even when libc has no .symtab to name
# malloc_printerr (Debian and most distributions strip it).
ALLOCATOR = {"free", "malloc", "calloc", "realloc", "reallocarray", "cfree", "memalign",
             "posix_memalign", "aligned_alloc", "valloc", "pvalloc", "malloc_trim",
             "__libc_free", "__libc_malloc", "__libc_realloc", "__libc_calloc",
             "_int_free", "_int_malloc", "_int_realloc", "malloc_consolidate"}
MEMORY_FAULT_SIGNALS = {"SIGSEGV", "SIGBUS"}
MEMORY_FAULT_CODES = {ExceptionCode.ACCESS_VIOLATION, ExceptionCode.GUARD_PAGE,
                      ExceptionCode.STACK_OVERFLOW, ExceptionCode.IN_PAGE_ERROR}


def bare_symbol(symbol: str) -> str:
    """`libc.so.6!abort+0x1a` -> `abort`."""
    name = symbol.rsplit("!", 1)[-1]
    return name.split("+", 1)[0].strip()


def _read_u64(read_memory: ReadMemory, address: int) -> int | None:
    try:
        data = read_memory(address, 8)
    except MEMORY_ERRORS:
        return None
    return int.from_bytes(data, "little") if len(data) == 8 else None


def _near(a: int, b: int | None) -> bool:
    return b is not None and abs(a - b) < 0x1000


def _branch_target(insn: Any, regs: Mapping[str, int], read_memory: ReadMemory) -> int | None:
    """Where an indirect call/jmp goes: the register, or the pointer in memory."""
    mems = memory_operands(insn, regs)
    if mems:
        return _read_u64(read_memory, mems[0].address)
    names = register_operands(insn)
    return register_value(names[0], regs, insn) & MASK64 if names else None


def operand_access(insn: Any, regs: Mapping[str, int], read_memory: ReadMemory,
                   fault_address: int | None, general_protection: bool) -> tuple[str, int | None]:
    """(access, address) of the memory access that faulted at this instruction.

    general_protection: the kernel gave no address (#GP, mostly a non-canonical
    one), so compute it from the operands.
    """
    rsp = regs.get("rsp", 0)
    mnemonic = insn.mnemonic
    if mnemonic.startswith("ret"):
        target = _read_u64(read_memory, rsp)
        if target is None:
            return "read", rsp
        # A non-canonical return target raises #GP at the ret itself.
        return ("execute", target) if general_protection or not is_canonical(target) else ("read", rsp)
    mems = memory_operands(insn, regs)
    if mnemonic in ("call", "jmp"):
        for mem in mems:
            if _near(mem.address, fault_address) or (general_protection and not is_canonical(mem.address)):
                return "read", mem.address
        if mnemonic == "call" and _near(rsp - 8, fault_address):
            return "write", rsp - 8
        target = _branch_target(insn, regs, read_memory)
        if target is not None and not is_canonical(target):
            return "execute", target
        return ("write", rsp - 8) if mnemonic == "call" else ("execute", target)
    # A read-modify-write operand reports as a write: the conservative call for triage.
    for mem in mems:
        matches = _near(mem.address, fault_address) if not general_protection else not is_canonical(mem.address)
        if matches:
            return mem.access.value, mem.address
    if mnemonic.startswith("push"):
        return "write", rsp - 8
    if mnemonic.startswith("pop"):
        return "read", rsp
    if mems:
        chosen = next((mem for mem in mems if mem.access == Access.WRITE), mems[0])
        return chosen.access.value, fault_address if not general_protection else chosen.address
    return "read", fault_address


def _decode(read_memory: ReadMemory, pc: int) -> Any | None:
    return decode(read_available(read_memory, pc, MAX_INSN), pc)


def _stack_exhausted(fault_address: int | None, rsp: int | None,
                     stack_bounds: tuple[int, int] | None) -> bool:
    if fault_address is None:
        return False
    if rsp is not None and abs(fault_address - rsp) <= STACK_SLACK:
        return True
    return stack_bounds is not None and stack_bounds[0] - STACK_GUARD_GAP <= fault_address < stack_bounds[0]


def refine(info: ExceptionInfo, names: set[str], memory_fault: bool, stack_exhausted: bool) -> tuple[int, str | None]:
    """The exception code the crash deserves, and which check caught it."""
    if names & STACK_PROTECTOR:
        return ExceptionCode.STACK_BUFFER_OVERRUN, "stack_protector"
    if names & FORTIFY:
        return ExceptionCode.STACK_BUFFER_OVERRUN, "fortify"
    if names & HEAP_REPORTERS or (info.signal == "SIGABRT" and names & ALLOCATOR):
        return ExceptionCode.HEAP_CORRUPTION, "heap"
    if info.signal == "SIGABRT" and any(FORTIFIED.match(name) for name in names):
        return ExceptionCode.STACK_BUFFER_OVERRUN, "fortify"
    if memory_fault and stack_exhausted:
        return ExceptionCode.STACK_OVERFLOW, None
    if info.from_user:
        # kill(pid, SIGTRAP/SIGSEGV...) is a message, not a fault of the code at pc.
        return ExceptionCode.SIGNAL, None
    return info.code, None


def analyze(info: ExceptionInfo, regs: Mapping[str, int], read_memory: ReadMemory,
            frame_symbols: list[str], stack_bounds: tuple[int, int] | None = None) -> dict[str, Any]:
    """The exception fields of a crash record, with the exception code refined."""
    pc = info.address
    insn = _decode(read_memory, pc)
    memory_fault = not info.from_user and (info.code in MEMORY_FAULT_CODES or info.signal in MEMORY_FAULT_SIGNALS)
    fault_address, access = info.fault_address, None
    if memory_fault:
        general_protection = info.si_code == SI_KERNEL and not fault_address
        if insn is None or fault_address == pc:
            # The pc itself is unmapped or not executable: a bad jump, call or return.
            access, fault_address = "execute", pc
        else:
            access, fault_address = operand_access(insn, regs, read_memory, fault_address, general_protection)
    names = {bare_symbol(s) for s in frame_symbols if s}
    # Running out of stack is a write (a push, a call, a store into a new frame) near
    # rsp. A read there is a `ret` or `pop` off a pivoted or smashed rsp (ReturnAv);
    # fetching code near rsp is StackCodeExecution.
    exhausted = access == "write" and _stack_exhausted(fault_address, regs.get("rsp"), stack_bounds)
    code, check = refine(info, names, memory_fault, exhausted)
    result: dict[str, Any] = {
        "exception": exception_name(code),
        "exception_code": int(code),
        "signal": info.signal,
        # Who raised it: si_code > 0 the kernel (a fault or trap of the code at pc), <= 0 a
        # process (SI_USER kill, SI_TKILL tkill/raise, SI_QUEUE sigqueue); never its pid.
        "si_code": info.si_code,
        "sent": bool(info.from_user),
        "address": pc,
        "fault_address": fault_address,
        "access": access,
        "instruction": f"{insn.mnemonic} {insn.op_str}".strip() if insn is not None else None,
    }
    if check is not None:
        result["check"] = check
    return result
