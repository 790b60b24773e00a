"""Exception analysis of a crash: access kind, real fault address, faulting instruction, refined code."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import capstone  # type: ignore[import-untyped, unused-ignore]  # capstone ships no type information
from capstone import x86  # type: ignore[import-untyped, unused-ignore]

from ..events import ExceptionCode, ExceptionInfo, exception_name
from ..symbols.unwind import MEMORY_ERRORS, read_available
from .disasm import MAX_INSN, engine

ReadMemory = Callable[[int, int], bytes]

SI_KERNEL = 0x80           # si_code of a #GP: the kernel reports si_addr 0
STACK_SLACK = 64 << 10     # a fault this close to rsp is the stack running out
STACK_GUARD_GAP = 1 << 20  # Linux keeps 256 pages unmapped below a growing stack
MASK = (1 << 64) - 1

# Where glibc ends up when its own checks abort the process.
STACK_PROTECTOR = {"__stack_chk_fail", "__stack_chk_fail_local"}
FORTIFY = {"__fortify_fail", "__chk_fail"}
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

_SUBREGISTERS = {f"e{n}": f"r{n}" for n in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp")}
_SUBREGISTERS.update({f"r{n}d": f"r{n}" for n in range(8, 16)})


def is_canonical(address: int) -> bool:
    """x86-64 addresses must sign-extend bit 47; others raise #GP, not a page fault."""
    top = address >> 47
    return top == 0 or top == (1 << 17) - 1


def bare_symbol(symbol: str) -> str:
    """`libc.so.6!abort+0x1a` -> `abort`."""
    name = symbol.rsplit("!", 1)[-1]
    return name.split("+", 1)[0].strip()


def _register(name: str, regs: Mapping[str, int], insn: Any) -> int:
    if name == "rip":
        return int(insn.address + insn.size)      # rip-relative operands use the next pc
    if name in regs:
        return regs[name]
    if name in _SUBREGISTERS:
        return regs.get(_SUBREGISTERS[name], 0) & 0xFFFFFFFF
    return 0


def effective_address(insn: Any, op: Any, regs: Mapping[str, int]) -> int:
    """base + index*scale + disp (+ fs/gs base) of a capstone memory operand."""
    mem = op.mem
    address = mem.disp
    if mem.base:
        address += _register(insn.reg_name(mem.base), regs, insn)
    if mem.index:
        address += _register(insn.reg_name(mem.index), regs, insn) * mem.scale
    if mem.segment in (x86.X86_REG_FS, x86.X86_REG_GS):
        address += regs.get("fs_base" if mem.segment == x86.X86_REG_FS else "gs_base", 0)
    return int(address) & MASK


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
    for op in insn.operands:
        if op.type == x86.X86_OP_REG:
            return _register(insn.reg_name(op.reg), regs, insn) & MASK
        if op.type == x86.X86_OP_MEM:
            return _read_u64(read_memory, effective_address(insn, op, regs))
    return None


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
    mems = [op for op in insn.operands if op.type == x86.X86_OP_MEM]
    addresses = [effective_address(insn, op, regs) for op in mems]
    if mnemonic in ("call", "jmp"):
        for op, address in zip(mems, addresses):
            if _near(address, fault_address) or (general_protection and not is_canonical(address)):
                return "read", address
        if mnemonic == "call" and _near(rsp - 8, fault_address):
            return "write", rsp - 8
        target = _branch_target(insn, regs, read_memory)
        if target is not None and not is_canonical(target):
            return "execute", target
        return ("write", rsp - 8) if mnemonic == "call" else ("execute", target)
    for op, address in zip(mems, addresses):
        matches = _near(address, fault_address) if not general_protection else not is_canonical(address)
        if matches:
            return _op_access(op), address
    if mnemonic.startswith("push"):
        return "write", rsp - 8
    if mnemonic.startswith("pop"):
        return "read", rsp
    if mems:
        chosen = next((i for i, op in enumerate(mems) if op.access & capstone.CS_AC_WRITE), 0)
        return _op_access(mems[chosen]), fault_address if not general_protection else addresses[chosen]
    return "read", fault_address


def _op_access(op: Any) -> str:
    # A read-modify-write operand reports as a write: the conservative call for triage.
    return "write" if op.access & capstone.CS_AC_WRITE else "read"


def _decode(read_memory: ReadMemory, pc: int) -> Any | None:
    code = read_available(read_memory, pc, MAX_INSN)
    return next(iter(engine(detail=True).disasm(code, pc, 1)), None)


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
        "address": pc,
        "fault_address": fault_address,
        "access": access,
        "instruction": f"{insn.mnemonic} {insn.op_str}".strip() if insn is not None else None,
    }
    if check is not None:
        result["check"] = check
    return result
