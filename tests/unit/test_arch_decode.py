"""The capstone memory-access decoder of instrument.arch.x86_64.decode: operands, addresses, access kinds."""

from __future__ import annotations

import pytest

from instrument.arch.x86_64.decode import classify_access, decode, memory_operands, register_operands
from instrument.events import Access

PC = 0x401000
REGS = {"rax": 0x5000, "rdi": 0x1000, "rsi": 0x2000, "rsp": 0x7ff0, "rcx": 0xFFFF_FFFF_0000_0003,
        "fs_base": 0x7f0000000000, "gs_base": 0}


@pytest.mark.parametrize("code, fault, expected", [
    (b"\x89\x47\x08", 0x1008, (Access.WRITE, 0x1008, 0x100C)),            # mov [rdi+8], eax
    (b"\x8b\x06", 0x2002, (Access.READ, 0x2000, 0x2004)),                  # mov eax, [rsi]
    (b"\x48\x83\x00\x01", 0x5004, (Access.WRITE, 0x5000, 0x5008)),         # add qword [rax], 1: read-modify-write
    (b"\x67\x8b\x04\x0f", 0x1003, (Access.READ, 0x1003, 0x1007)),          # mov eax, [edi+ecx]: 32-bit address
    (b"\x50", 0x7fe8, (Access.WRITE, 0x7fe8, 0x7ff0)),                    # push rax: implicit, by mnemonic
    (b"\xc3", 0x7ff0, (Access.READ, 0x7ff0, 0x7ff8)),                     # ret
    (b"\x90", PC, (Access.EXECUTE, PC, PC + 1)),                          # the pc itself
    (b"", 0x1234, (Access.READ, 0x1234, 0x1235)),                         # nothing decodes
])
def test_classify_access(code: bytes, fault: int, expected: tuple[Access, int, int]) -> None:
    assert classify_access(code, PC, REGS, fault) == expected


def test_memory_operands_add_segment_bases_and_use_the_next_pc_for_rip() -> None:
    insn = decode(b"\x64\x48\x8b\x04\x25\x28\x00\x00\x00", PC)          # mov rax, fs:[0x28]
    [op] = memory_operands(insn, REGS)
    assert (op.address, op.size, op.access) == (0x7f0000000028, 8, Access.READ)
    insn = decode(b"\x48\x8b\x05\x10\x00\x00\x00", PC)                  # mov rax, [rip+0x10]
    assert memory_operands(insn, REGS)[0].address == PC + 7 + 0x10
    assert register_operands(insn) == ["rax"]


def test_decodings_are_cached_per_pc_and_bytes() -> None:
    assert decode(b"\x8b\x06", PC) is decode(b"\x8b\x06", PC)
    assert decode(b"\x8b\x06", PC + 1) is not decode(b"\x8b\x06", PC)
    assert decode(b"", PC) is None
