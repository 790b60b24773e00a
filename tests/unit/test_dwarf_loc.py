"""DWARF location expressions against a frame of plain values (symbols/dwarf_loc.py)."""

from __future__ import annotations

import pytest
from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.structs import DWARFStructs

from instrument.errors import EvaluationError
from instrument.symbols.dwarf_loc import FrameInputs, OptimizedOut, Place, evaluate, read_place

PARSER = DWARFExprParser(DWARFStructs(little_endian=True, dwarf_format=32, address_size=8))
MEMORY = {0x1000 + i: b for i, b in enumerate(bytes(range(64)))}
REGS = {0: 0x1111, 5: 0x1008, 6: 0x2000, 7: 0x3000}        # rax, rdi, rbp, rsp


def read(address: int, size: int) -> bytes:
    try:
        return bytes(MEMORY[address + i] for i in range(size))
    except KeyError:
        raise EvaluationError(f"cannot read {size} bytes at {address:#x}") from None


def entry(sub: object) -> int:
    return 0xE0E0          # what the caller passed, as a test's stand-in


def frame(**changes: object) -> FrameInputs:
    inputs = FrameInputs(REGS, read, lambda: 0x1020, lambda: 0x1030, entry, bias=0x100)
    for k, v in changes.items():
        setattr(inputs, k, v)
    return inputs


def place(code: str, inputs: FrameInputs | None = None) -> Place:
    return evaluate(PARSER.parse_expr(bytes.fromhex(code)), inputs or frame())


@pytest.mark.parametrize(("code", "expected"), [
    ("91 7c", Place("memory", 0x1020 - 4)),                  # DW_OP_fbreg -4
    ("9c", Place("memory", 0x1030)),                         # DW_OP_call_frame_cfa
    ("75 10", Place("memory", 0x1018)),                      # DW_OP_breg5 (rdi) +16
    ("55", Place("register", register=5)),                   # DW_OP_reg5
    ("03 0010000000000000", Place("memory", 0x1100)),        # DW_OP_addr 0x1000, plus the load bias
    ("35 23 02 9f", Place("value", value=(7).to_bytes(8, "little"))),   # lit5 plus_uconst 2 stack_value
    ("a3 01 55 9f", Place("value", value=(0xE0E0).to_bytes(8, "little"))),  # entry_value(reg5) stack_value
    ("", Place("optimized")),
])
def test_locations(code: str, expected: Place) -> None:
    assert place(code) == expected


def test_a_value_is_read_from_where_its_location_says() -> None:
    assert read_place(place("75 00"), 4, frame()) == bytes([8, 9, 10, 11])        # memory at rdi
    assert read_place(place("50"), 2, frame()) == (0x1111).to_bytes(2, "little")  # low bytes of rax
    assert read_place(place("75 00 06 9f"), 8, frame()) == bytes(range(8, 16))    # *(rdi) as a value


def test_pieces_join_registers_and_memory_and_an_optimized_piece_is_no_value() -> None:
    # rax (4 bytes), then 4 bytes of memory at rdi: one 8-byte struct split by the optimizer.
    split = place("50 93 04 75 00 93 04")
    assert split.kind == "pieces"
    assert read_place(split, 8, frame()) == (0x1111).to_bytes(4, "little") + bytes([8, 9, 10, 11])
    with pytest.raises(OptimizedOut):
        read_place(place("50 93 04 93 04"), 8, frame())          # the second half has no location


def test_what_cannot_be_evaluated_says_why() -> None:
    with pytest.raises(EvaluationError, match="register rbx is not available"):
        place("73 00")                                            # DW_OP_breg3: rbx is not in this frame
    with pytest.raises(OptimizedOut, match="implicit pointer"):
        place("f2 00000000 00")
    with pytest.raises(OptimizedOut):
        read_place(place(""), 4, frame())
