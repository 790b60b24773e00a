"""Unit tests of the unwinder: CFI rule evaluation on synthetic rows, fallbacks on a synthetic stack."""

from __future__ import annotations

import struct

import pytest
from elftools.dwarf.callframe import CFARule, RegisterRule
from hypothesis import given
from hypothesis import strategies as st

from instrument.symbols import cfi as C
from instrument.symbols import unwind as U
from instrument.symbols.cfi_rules import UnwindStop, apply_row, eval_cfa, eval_expression
from instrument.symbols.unwind import Frame, unwind


class Memory:
    """Sparse fake target memory: reads outside the given regions raise OSError."""

    def __init__(self, regions: dict[int, bytes] | None = None) -> None:
        self.regions = dict(regions or {})

    def put_u64(self, address: int, *values: int) -> None:
        self.regions[address] = struct.pack(f"<{len(values)}Q", *values)

    def __call__(self, address: int, size: int) -> bytes:
        for base, data in self.regions.items():
            if base <= address and address + size <= base + len(data):
                return data[address - base:address - base + size]
        raise OSError(5, "Input/output error")


RSP, RBP, RIP = 7, 6, 16

# DW_CFA_def_cfa_expression of every PLT: CFA = rsp + 8 + ((rip & 15) >= 11) * 8,
# because the lazy-binding stub pushes one more word after its 11th byte.
PLT_CFA = bytes([0x77, 0x08, 0x80, 0x00, 0x3F, 0x1A, 0x3B, 0x2A, 0x33, 0x24, 0x22])


def test_cfa_rule_register_plus_offset() -> None:
    assert eval_cfa(CFARule(reg=RSP, offset=16), {RSP: 0x7000}, Memory()) == 0x7010
    assert eval_cfa(CFARule(reg=RBP, offset=16), {RBP: 0x7100, RSP: 0x7000}, Memory()) == 0x7110


def test_cfa_rule_on_an_unknown_register_stops() -> None:
    with pytest.raises(UnwindStop):
        eval_cfa(CFARule(reg=RBP, offset=16), {RSP: 0x7000}, Memory())


@given(rsp=st.integers(0x1000, 2**47).map(lambda v: v & ~7), rip=st.integers(0x1000, 2**47))
def test_plt_cfa_expression(rsp: int, rip: int) -> None:
    expected = rsp + 8 + (8 if rip & 15 >= 11 else 0)
    assert eval_cfa(CFARule(expr=list(PLT_CFA)), {RSP: rsp, RIP: rip}, Memory()) == expected


def test_expression_with_deref_reads_memory() -> None:
    memory = Memory()
    memory.put_u64(0x7020, 0x7F00)
    # DW_OP_breg7 0x20; DW_OP_deref  (glibc's signal-frame CFA: the saved rsp)
    assert eval_expression([0x77, 0x20, 0x06], {RSP: 0x7000}, memory) == 0x7F00


def test_unsupported_expression_op_stops_instead_of_guessing() -> None:
    with pytest.raises(UnwindStop):
        eval_expression([0x96], {}, Memory())          # DW_OP_nop is fine, but leaves an empty stack
    with pytest.raises(UnwindStop):
        eval_expression([0x0E0], {}, Memory())         # DW_OP_GNU_push_tls_address


def _prologue_row() -> dict:
    """The row after `push rbp; push rbx; sub rsp, 8` in a -O2 function that also moves r13 to r14."""
    return {
        "pc": 0x1000,
        "cfa": CFARule(reg=RSP, offset=32),
        RIP: RegisterRule(RegisterRule.OFFSET, -8),
        RBP: RegisterRule(RegisterRule.OFFSET, -16),
        3: RegisterRule(RegisterRule.OFFSET, -24),                 # rbx
        14: RegisterRule(RegisterRule.REGISTER, 13),               # r14 lives in r13 for now
        13: RegisterRule(RegisterRule.UNDEFINED),
        15: RegisterRule(RegisterRule.EXPRESSION, [0x40, 0x1C]),   # DW_OP_lit16; DW_OP_minus -> CFA-16
        12: RegisterRule(RegisterRule.VAL_OFFSET, -40),
    }


def test_apply_row_restores_the_callers_registers() -> None:
    memory = Memory()
    memory.put_u64(0x7008, 0xAAAA, 0x7100, 0x401234)               # rbx, rbp, return address
    regs = {RSP: 0x7000, RBP: 0x1, 3: 0x2, 13: 0x1313, 14: 0x1414, 15: 0x1515, 0: 0x99, RIP: 0x1000}
    cfa, caller = apply_row(_prologue_row(), RIP, regs, memory)
    assert cfa == 0x7020
    assert caller == {
        RSP: 0x7020,
        RIP: 0x401234,
        RBP: 0x7100,
        3: 0xAAAA,
        14: 0x1313,
        15: 0x7100,            # read from CFA-16
        12: 0x7020 - 40,
        # rax (caller-saved) is gone; r13 is undefined in the caller
    }


def test_callee_saved_registers_without_a_rule_keep_their_value() -> None:
    memory = Memory()
    memory.put_u64(0x7008, 0x401234)
    row = {"pc": 0, "cfa": CFARule(reg=RSP, offset=16), RIP: RegisterRule(RegisterRule.OFFSET, -8)}
    regs = {RSP: 0x7000, RBP: 0x7100, 3: 3, 12: 12, 13: 13, 14: 14, 15: 15, 0: 1, 1: 2, RIP: 0x1000}
    _, caller = apply_row(row, RIP, regs, memory)
    assert caller == {RSP: 0x7010, RIP: 0x401234, RBP: 0x7100, 3: 3, 12: 12, 13: 13, 14: 14, 15: 15}


def test_undefined_return_address_is_the_outermost_frame() -> None:
    row = {"pc": 0, "cfa": CFARule(reg=RSP, offset=8), RIP: RegisterRule(RegisterRule.UNDEFINED)}
    with pytest.raises(UnwindStop):
        apply_row(row, RIP, {RSP: 0x7000, RIP: 0x1000}, Memory())


def test_unreadable_saved_register_stops() -> None:
    row = {"pc": 0, "cfa": CFARule(reg=RSP, offset=16), RIP: RegisterRule(RegisterRule.OFFSET, -8)}
    with pytest.raises(UnwindStop):
        apply_row(row, RIP, {RSP: 0x7000, RIP: 0x1000}, Memory())


@pytest.mark.parametrize("code, is_call", [
    ("e8 10 00 00 00", True),          # call rel32
    ("ff d0", True),                   # call rax
    ("41 ff d4", True),                # call r12
    ("ff 50 08", True),                # call [rax+8]
    ("ff 54 24 08", True),             # call [rsp+8]
    ("ff 15 00 01 00 00", True),       # call [rip+0x100]
    ("41 ff 94 24 00 01 00 00", True),  # call [r12+0x100]
    ("ff e0", False),                  # jmp rax
    ("48 89 e5", False),               # mov rbp, rsp
    ("00 00 00 00 00 00", False),
])
def test_return_site_recognises_call_encodings(code: str, is_call: bool) -> None:
    assert U._ends_with_call(bytes.fromhex("90" * 8 + code.replace(" ", ""))) is is_call


# -- whole unwinds on a synthetic process ---------------------------------------

TEXT = 0x400000
NO_CFI = "/nonexistent/no-cfi"


def find_module(pc: int) -> tuple[str, int] | None:
    return (NO_CFI, 0) if TEXT <= pc < TEXT + 0x10000 else None


def _text_with_calls() -> bytes:
    code = bytearray(b"\x90" * 0x1000)
    for ret in (0x105, 0x205, 0x305):
        code[ret - 5:ret] = b"\xe8\x00\x00\x00\x00"
    return bytes(code)


def test_frame_pointer_chain_when_there_is_no_cfi() -> None:
    memory = Memory({TEXT: _text_with_calls()})
    memory.put_u64(0x7F020, 0x7F040, TEXT + 0x105)
    memory.put_u64(0x7F040, 0x7F080, TEXT + 0x205)
    memory.put_u64(0x7F080, 0, TEXT + 0x305)
    regs = {"rip": TEXT + 0x10, "rsp": 0x7F000, "rbp": 0x7F020}
    frames = unwind(regs, memory, find_module)
    assert frames[:4] == [
        Frame(TEXT + 0x10, 0x7F030, "context"),
        Frame(TEXT + 0x105, 0x7F050, "fp"),
        Frame(TEXT + 0x205, 0x7F090, "fp"),
        Frame(TEXT + 0x305, frames[3].cfa, frames[3].method),
    ]
    assert frames[1].lookup_pc == TEXT + 0x104 and frames[0].lookup_pc == TEXT + 0x10


def test_frame_pointer_chain_that_goes_down_is_rejected() -> None:
    memory = Memory({TEXT: b"\x90" * 0x1000})
    memory.put_u64(0x7F020, 0x7F000, TEXT + 0x105)     # saved rbp below this one: corrupt
    frames = unwind({"rip": TEXT + 0x10, "rsp": 0x7F000, "rbp": 0x7F020}, memory, find_module)
    assert frames == [Frame(TEXT + 0x10, None, "context")]


def test_bad_call_scans_for_the_return_address_at_rsp() -> None:
    memory = Memory({TEXT: _text_with_calls()})
    memory.put_u64(0x7F000, 0x1234, 0x55, TEXT + 0x205, 0)   # junk, then a return site
    frames = unwind({"rip": 0xDEADBEEF, "rsp": 0x7F000, "rbp": 0}, memory, find_module, depth=2)
    assert frames == [Frame(0xDEADBEEF, 0x7F018, "context"), Frame(TEXT + 0x205, None, "scan")]


def test_values_not_after_a_call_are_not_return_addresses() -> None:
    memory = Memory({TEXT: b"\x90" * 0x1000})
    memory.put_u64(0x7F000, TEXT + 0x105, TEXT + 0x205)
    frames = unwind({"rip": 0xDEADBEEF, "rsp": 0x7F000}, memory, find_module)
    assert frames == [Frame(0xDEADBEEF, None, "context")]


def test_signal_trampoline_restores_the_interrupted_context() -> None:
    trampoline = TEXT + 0x800
    sp = 0x7E000
    gregs = [0] * 17
    gregs[10], gregs[15], gregs[16] = 0x7F020, 0x7F000, TEXT + 0x42   # rbp, rsp, rip
    memory = Memory({TEXT: _text_with_calls()[:0x800] + U.SIGRETURN_CODE + b"\x90" * 0x7F7})
    memory.put_u64(sp + U.UC_MCONTEXT, *gregs)
    memory.put_u64(0x7F020, 0, TEXT + 0x105)
    frames = unwind({"rip": trampoline, "rsp": sp}, memory, find_module, depth=3)
    assert frames[0] == Frame(trampoline, sp, "context")
    # The interrupted pc is exact (no -1): it is the instruction to resume.
    assert frames[1] == Frame(TEXT + 0x42, 0x7F030, "context")
    assert frames[1].lookup_pc == TEXT + 0x42
    assert frames[2].pc == TEXT + 0x105 and frames[2].method == "fp"


def test_stops_at_pc_zero_and_depth() -> None:
    assert unwind({"rip": 0, "rsp": 0x7F000}, Memory(), find_module) == []
    memory = Memory({TEXT: _text_with_calls()})
    memory.put_u64(0x7F020, 0x7F040, TEXT + 0x105)
    memory.put_u64(0x7F040, 0x7F080, TEXT + 0x205)
    frames = unwind({"rip": TEXT + 0x10, "rsp": 0x7F000, "rbp": 0x7F020}, memory, find_module, depth=2)
    assert [f.pc for f in frames] == [TEXT + 0x10, TEXT + 0x105]


# -- the FDE index of a real file ----------------------------------------------

def _libc_path() -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "/libc.so" in path or "/libc-" in path:
                return path
    pytest.fail("this Python process has no libc mapped")


def test_eh_frame_hdr_index_agrees_with_a_full_parse() -> None:
    path = _libc_path()
    cfi = C.module_cfi(path)
    assert cfi is not None and cfi.sources[0].ends is None          # indexed through .eh_frame_hdr
    # A fresh CFI object: a lazily-used one has pyelftools state the full parse trips over.
    full = C._parsed_source(C.ModuleCFI(path).sources[0].cfi)
    assert full.starts == cfi.sources[0].starts
    for i in range(0, len(full.starts), max(1, len(full.starts) // 200)):
        start, end = full.starts[i], full.ends[i]
        for pc in (start, end - 1):
            fde = cfi.find_fde(pc)
            assert fde is not None and fde.offset == full.offsets[i]
        if i + 1 < len(full.starts) and full.starts[i + 1] > end:
            assert cfi.find_fde(end) is None                          # a gap between FDEs
    assert C.module_cfi(path) is cfi                                  # cached per (realpath, mtime)


def test_rows_are_looked_up_by_address_within_an_fde() -> None:
    cfi = C.module_cfi(_libc_path())
    assert cfi is not None
    start = cfi.sources[0].starts[len(cfi.sources[0].starts) // 2]
    found = cfi.row(start)
    assert found is not None
    row, ra_column = found
    # At a function's first instruction the CFA is rsp+8 and the return address at CFA-8.
    assert ra_column == RIP and (row["cfa"].reg, row["cfa"].offset) == (RSP, 8)
    assert (row[RIP].type, row[RIP].arg) == (RegisterRule.OFFSET, -8)


def test_a_file_that_is_not_elf_has_no_cfi(tmp_path) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"not an elf file at all")
    assert C.module_cfi(str(bogus)) is None
    assert C.module_cfi(str(tmp_path / "missing.so")) is None
