"""Unit tests of crash analysis and disassembly on synthetic code, registers and memory."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instrument.analysis import analyze, around, disassemble
from instrument.analysis.fault import bare_symbol, is_canonical
from instrument.events import ExceptionCode, ExceptionInfo

PC = 0x401000
STACK = 0x7FFE0000
RSP = STACK + 0x800


class Memory:
    """Fake target memory: code at PC, one stack page; anything else raises OSError."""

    def __init__(self, code: bytes = b"", stack: dict[int, int] | None = None) -> None:
        self.regions = {PC: code + b"\x90" * 16, STACK: bytearray(0x1000)}
        for address, value in (stack or {}).items():
            self.regions[STACK][address - STACK:address - STACK + 8] = struct.pack("<Q", value)

    def __call__(self, address: int, size: int) -> bytes:
        for base, data in self.regions.items():
            if base <= address and address + size <= base + len(data):
                return bytes(data[address - base:address - base + size])
        raise OSError(5, "Input/output error")


def segv(fault_address: int | None, si_code: int = 1, pc: int = PC) -> ExceptionInfo:
    return ExceptionInfo(code=ExceptionCode.ACCESS_VIOLATION, address=pc, fault_address=fault_address,
                         signal="SIGSEGV", si_code=si_code)


def general_protection(pc: int = PC) -> ExceptionInfo:
    return segv(0, si_code=0x80, pc=pc)     # SI_KERNEL: the kernel knows no address


def regs(**values: int) -> dict[str, int]:
    base = {name: 0 for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r12")}
    base.update(rsp=RSP, rip=PC, fs_base=0x7F0000001000)
    base.update(values)
    return base


def run(code: str, info: ExceptionInfo, symbols: list[str] | None = None, stack: dict[int, int] | None = None,
        bounds: tuple[int, int] | None = None, **reg_values: int) -> dict:
    return analyze(info, regs(**reg_values), Memory(bytes.fromhex(code), stack), symbols or [], bounds)


# -- access and fault address ----------------------------------------------------

def test_null_read_at_a_small_offset() -> None:
    result = run("488b4010", segv(0x10), rax=0)                       # mov rax, [rax+0x10]
    assert result["instruction"] == "mov rax, qword ptr [rax + 0x10]"
    assert (result["access"], result["fault_address"]) == ("read", 0x10)
    assert result["exception"] == "ACCESS_VIOLATION" and result["exception_code"] == 0xC0000005
    assert result["address"] == PC and result["signal"] == "SIGSEGV"


def test_null_write() -> None:
    result = run("8910", segv(0), rax=0)                              # mov [rax], edx
    assert (result["access"], result["fault_address"]) == ("write", 0)


def test_read_modify_write_counts_as_a_write() -> None:
    assert run("830001", segv(0x20), rax=0x20)["access"] == "write"   # add dword ptr [rax], 1


def test_non_canonical_read_computes_the_operand_address() -> None:
    result = run("488b00", general_protection(), rax=0x4141414141414141)   # mov rax, [rax]
    assert (result["access"], result["fault_address"]) == ("read", 0x4141414141414141)


def test_non_canonical_write_through_base_index_scale_displacement() -> None:
    # mov dword ptr [rbx + rcx*4 + 8], eax
    result = run("89448b08", general_protection(), rbx=0x4141414141414000, rcx=0x10)
    assert (result["access"], result["fault_address"]) == ("write", 0x4141414141414000 + 0x40 + 8)


def test_ret_to_a_non_canonical_address_is_an_execute_fault_at_the_target() -> None:
    result = run("c3", general_protection(), stack={RSP: 0x4141414141414141})
    assert result["instruction"] == "ret"
    assert (result["access"], result["fault_address"]) == ("execute", 0x4141414141414141)


def test_call_through_a_non_canonical_register() -> None:
    result = run("ffd0", general_protection(), rax=0x8000000000000000)     # call rax
    assert (result["access"], result["fault_address"]) == ("execute", 0x8000000000000000)


def test_call_through_a_pointer_that_cannot_be_read() -> None:
    result = run("ff5008", segv(0x18), rax=0x10)                        # call [rax+8]
    assert (result["access"], result["fault_address"]) == ("read", 0x18)


def test_pc_outside_mapped_code_is_an_execute_fault() -> None:
    result = run("90", segv(0xDEADBEEF, pc=0xDEADBEEF))
    assert result["instruction"] is None
    assert (result["access"], result["fault_address"]) == ("execute", 0xDEADBEEF)


def test_string_instruction_picks_the_operand_that_faulted() -> None:
    # rep movsb byte ptr [rdi], byte ptr [rsi]
    assert run("f3a4", segv(0x5000), rsi=0x5000, rdi=0x9000)["access"] == "read"
    assert run("f3a4", segv(0x9000), rsi=0x5000, rdi=0x9000)["access"] == "write"


def test_fs_segment_base_is_added() -> None:
    # mov rax, qword ptr fs:[0x28], under #GP: the address must include fs_base
    result = run("64488b042528000000", general_protection(), fs_base=0x4141414141410000)
    assert result["fault_address"] == 0x4141414141410028


def test_rip_relative_operand_uses_the_next_instruction() -> None:
    # mov rax, qword ptr [rip + 0x100]: 7 bytes long
    result = run("488b0500010000", general_protection(), rip=PC)
    assert result["fault_address"] == PC + 7 + 0x100 and result["access"] == "read"


# -- refined exception codes ------------------------------------------------------

def test_stack_exhaustion_by_a_push_below_rsp() -> None:
    result = run("55", segv(RSP - 8))                                 # push rbp
    assert result["exception"] == "STACK_OVERFLOW" and result["exception_code"] == 0xC00000FD
    assert (result["access"], result["fault_address"]) == ("write", RSP - 8)


def test_stack_exhaustion_in_the_guard_gap_far_from_rsp() -> None:
    # A huge frame: `mov [rax], edx` with rax deep in the guard gap below the stack.
    info = segv(STACK - 0x80000)
    result = run("8910", info, bounds=(STACK, STACK + 0x1000), rax=STACK - 0x80000)
    assert result["exception"] == "STACK_OVERFLOW"
    assert run("8910", info, rax=STACK - 0x80000)["exception"] == "ACCESS_VIOLATION"


def abort_info() -> ExceptionInfo:
    return ExceptionInfo(code=ExceptionCode.SIGNAL, address=PC, signal="SIGABRT", si_code=-6, from_user=True)


@pytest.mark.parametrize("symbols, exception, check", [
    (["raise", "abort", "__fortify_fail", "libc.so.6!__stack_chk_fail+0x10", "f"], "STACK_BUFFER_OVERRUN",
     "stack_protector"),
    (["raise", "abort", "__fortify_fail", "__chk_fail", "f"], "STACK_BUFFER_OVERRUN", "fortify"),
    (["raise", "abort", "__libc_message", "malloc_printerr", "_int_free"], "HEAP_CORRUPTION", "heap"),
    (["raise", "abort", "?", "libc.so.6!free+0x4f", "release", "main"], "HEAP_CORRUPTION", "heap"),
    (["raise", "abort", "give_up", "main"], "SIGNAL", None),
])
def test_glibc_checks_refine_the_exception(symbols: list[str], exception: str, check: str | None) -> None:
    result = analyze(abort_info(), regs(), Memory(b"\x89\xc5"), symbols, None)
    assert result["exception"] == exception and result["exception_code"] == ExceptionCode[exception]
    assert result.get("check") == check
    assert result["access"] is None and result["fault_address"] is None


def test_a_segfault_inside_free_stays_an_access_violation() -> None:
    result = run("488b4010", segv(0x10), symbols=["_int_free", "free", "main"], rax=0)
    assert result["exception"] == "ACCESS_VIOLATION"


def test_signals_sent_by_another_process_stay_signals() -> None:
    trap = ExceptionInfo(code=ExceptionCode.BREAKPOINT, address=PC, signal="SIGTRAP", si_code=0, from_user=True)
    sent_segv = ExceptionInfo(code=ExceptionCode.ACCESS_VIOLATION, address=PC, signal="SIGSEGV", si_code=0,
                              from_user=True)
    for info in (trap, sent_segv):
        result = analyze(info, regs(), Memory(b"\x55"), [], None)
        assert result["exception"] == "SIGNAL" and result["access"] is None


def test_non_memory_faults_keep_their_code() -> None:
    fpe = ExceptionInfo(code=ExceptionCode.INT_DIVIDE_BY_ZERO, address=PC, fault_address=PC, signal="SIGFPE",
                        si_code=1)
    result = analyze(fpe, regs(), Memory(bytes.fromhex("f7f9")), ["divide", "main"], None)   # idiv ecx
    assert result["exception"] == "INT_DIVIDE_BY_ZERO" and result["instruction"] == "idiv ecx"
    assert result["access"] is None and result["fault_address"] == PC


# -- helpers ---------------------------------------------------------------------

@given(st.integers(0, 2**64 - 1))
def test_canonical_addresses_sign_extend_bit_47(address: int) -> None:
    high = address >> 47
    assert is_canonical(address) == (high in (0, 2**17 - 1))


def test_bare_symbol() -> None:
    assert bare_symbol("libc.so.6!abort+0x1a") == "abort"
    assert bare_symbol("main") == "main"
    assert bare_symbol("target!hit+4") == "hit"


# -- disassembly -----------------------------------------------------------------

# push rbp; mov rbp, rsp; movabs rax, 0x9090909090909090 (bytes that decode as nops
# when entered in the middle); mov eax, [rdi+4]; pop rbp; ret
FUNCTION = bytes.fromhex("55" "4889e5" "48b89090909090909090" "8b4704" "5d" "c3")
CURRENT = PC + 1 + 3 + 10         # the mov eax, [rdi+4]


def code_memory() -> Memory:
    memory = Memory()
    memory.regions = {PC - 0x40: b"\xcc" * 0x40 + FUNCTION}   # int3 padding before, nothing after
    return memory


def test_disassemble_stops_where_memory_ends() -> None:
    rows = disassemble(code_memory(), PC, 20)
    assert [r["text"] for r in rows] == ["push rbp", "mov rbp, rsp", "movabs rax, 0x9090909090909090",
                                         "mov eax, dword ptr [rdi + 4]", "pop rbp", "ret"]
    assert rows[3] == {"address": CURRENT, "size": 3, "text": "mov eax, dword ptr [rdi + 4]", "bytes": "8b4704"}


def test_around_finds_the_instruction_boundaries_before_pc() -> None:
    rows = around(code_memory(), CURRENT, before=3, after=2)
    assert [r["address"] for r in rows] == [PC, PC + 1, PC + 4, CURRENT, CURRENT + 3, CURRENT + 4]
    assert [r["current"] for r in rows] == [False, False, False, True, False, False]


def test_around_with_the_function_start() -> None:
    rows = around(code_memory(), CURRENT, before=10, after=0, function_start=PC)
    assert [r["text"] for r in rows][:3] == ["push rbp", "mov rbp, rsp", "movabs rax, 0x9090909090909090"]
    assert rows[-1]["current"] and len(rows) == 4


def test_around_an_unreadable_pc_is_empty() -> None:
    assert around(code_memory(), 0xDEAD0000) == []
