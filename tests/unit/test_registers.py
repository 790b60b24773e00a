"""Tests of instrument.arch.x86_64: the ptrace register layout, sub-registers and ABI argument slots."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from instrument.arch import x86_64 as R

FULL = 0x1122334455667788


def _regs(**values: int) -> dict[str, int]:
    regs = {name: 0 for name in R.USER_REGS_FIELDS}
    regs.update(values)
    return regs


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the layout probe")
def test_user_regs_fields_match_glibc_struct_layout(tmp_path: Path) -> None:
    # The Linux backend builds its ctypes struct from this tuple, so compare it
    # with the real C layout: every field is 8 bytes, in this order.
    probe = "\n".join(
        ["#include <stdio.h>", "#include <stddef.h>", "#include <sys/user.h>", "int main(void) {"]
        + [f'printf("%zu\\n", offsetof(struct user_regs_struct, {f}));' for f in R.USER_REGS_FIELDS]
        + ['printf("%zu\\n", sizeof(struct user_regs_struct));', "return 0; }"]
    )
    (tmp_path / "probe.c").write_text(probe)
    subprocess.run(["gcc", "-o", str(tmp_path / "probe"), str(tmp_path / "probe.c")], check=True)
    out = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True, check=True)
    offsets = [int(x) for x in out.stdout.split()]
    assert offsets[:-1] == [8 * i for i in range(len(R.USER_REGS_FIELDS))]
    assert offsets[-1] == 8 * len(R.USER_REGS_FIELDS) == 27 * 8


def test_general_registers_are_real_fields() -> None:
    assert set(R.GENERAL_REGISTERS) <= set(R.USER_REGS_FIELDS)
    assert len(R.GENERAL_REGISTERS) == 18
    assert "orig_rax" not in R.GENERAL_REGISTERS and "fs_base" not in R.GENERAL_REGISTERS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rax", FULL), ("eax", 0x55667788), ("ax", 0x7788), ("al", 0x88), ("ah", 0x77),
        ("ebx", 0x55667788), ("bh", 0x77), ("cl", 0x88), ("dx", 0x7788),
        ("esi", 0x55667788), ("si", 0x7788), ("sil", 0x88), ("dil", 0x88),
        ("bpl", 0x88), ("spl", 0x88), ("esp", 0x55667788),
        ("r8d", 0x55667788), ("r8w", 0x7788), ("r8b", 0x88), ("r15b", 0x88),
        ("eip", 0x55667788), ("ip", 0x7788), ("flags", 0x7788), ("eflags", FULL),
    ],
)
def test_read_sub_registers(name: str, expected: int) -> None:
    regs = {name: FULL for name in R.USER_REGS_FIELDS}
    assert R.read_register(regs, name) == expected


def test_every_sub_register_maps_into_a_real_field() -> None:
    for name, (full, shift, width) in R.SUB_REGISTERS.items():
        assert full in R.USER_REGS_FIELDS, name
        assert shift in (0, 8) and width in (8, 16, 32), name
        assert R.full_register(name) == full
    assert len([n for n in R.SUB_REGISTERS if n.startswith("r") and n[-1] in "dwb"]) == 24


def test_32_bit_write_zero_extends_like_the_cpu() -> None:
    regs = _regs(rax=FULL, r9=FULL, rip=FULL)
    R.write_register(regs, "eax", 0xDEADBEEF)
    R.write_register(regs, "r9d", -1)
    assert regs["rax"] == 0xDEADBEEF
    assert regs["r9"] == 0xFFFFFFFF


def test_16_and_8_bit_writes_merge() -> None:
    regs = _regs(rax=FULL, rbx=FULL, r10=FULL, rsi=FULL, eflags=0x10246)
    R.write_register(regs, "ax", 0xABCD)
    assert regs["rax"] == 0x112233445566ABCD
    R.write_register(regs, "al", 0x01)
    R.write_register(regs, "ah", 0x02)
    assert regs["rax"] == 0x1122334455660201
    R.write_register(regs, "bh", -1)
    assert regs["rbx"] == 0x112233445566FF88
    R.write_register(regs, "r10b", 0x1FF)  # wider than the field: truncated
    assert regs["r10"] == 0x11223344556677FF
    R.write_register(regs, "sil", 0)
    assert regs["rsi"] == 0x1122334455667700
    R.write_register(regs, "flags", 0x0202)
    assert regs["eflags"] == 0x10202


def test_full_register_write_masks_to_64_bits() -> None:
    regs = _regs()
    R.write_register(regs, "rdi", -1)
    assert regs["rdi"] == R.MASK64
    R.write_register(regs, "rdi", 1 << 64 | 5)
    assert regs["rdi"] == 5


def test_is_register() -> None:
    for name in ("rax", "eax", "ax", "al", "ah", "r8d", "r8w", "r8b", "sil", "dil", "bpl",
                 "spl", "eip", "ip", "flags", "eflags", "orig_rax", "fs_base", "gs"):
        assert R.is_register(name), name
    for name in ("RAX", "foo", "arg0", "retval", "r16", "xmm0", "", "rax "):
        assert not R.is_register(name), name


def test_unknown_register_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        R.read_register(_regs(), "xmm0")
    with pytest.raises(KeyError):
        R.write_register(_regs(), "r16d", 1)


class _Stack:
    """A little stack of 8-byte slots above rsp, for stack-passed arguments."""

    def __init__(self, rsp: int, words: list[int]) -> None:
        self.mem = bytearray(b"".join(w.to_bytes(8, "little") for w in words))
        self.rsp = rsp

    def read(self, address: int, size: int) -> bytes:
        off = address - self.rsp
        assert 0 <= off and off + size <= len(self.mem), hex(address)
        return bytes(self.mem[off: off + size])

    def write(self, address: int, data: bytes) -> None:
        off = address - self.rsp
        assert 0 <= off and off + len(data) <= len(self.mem), hex(address)
        self.mem[off: off + len(data)] = data


def test_sysv_arguments() -> None:
    regs = _regs(rdi=1, rsi=2, rdx=3, rcx=4, r8=5, r9=6, rsp=0x7000)
    # [rsp] is the return address; the seventh argument sits right above it.
    stack = _Stack(0x7000, [0x401000, 7, 8])
    got = [R.read_arg("sysv", i, regs, stack.read) for i in range(8)]
    assert got == [1, 2, 3, 4, 5, 6, 7, 8]
    R.write_arg("sysv", 2, regs, -1, stack.write)
    assert regs["rdx"] == R.MASK64
    R.write_arg("sysv", 6, regs, 0x99, stack.write)
    assert R.read_arg("sysv", 6, regs, stack.read) == 0x99


def test_ms_x64_arguments_use_home_space() -> None:
    regs = _regs(rcx=1, rdx=2, r8=3, r9=4, rdi=0xBAD, rsi=0xBAD, rsp=0x7000)
    # return address, 4 home slots (0x8..0x27), then arg4 at 0x28 and arg5 at 0x30.
    stack = _Stack(0x7000, [0x401000, 0xBAD, 0xBAD, 0xBAD, 0xBAD, 5, 6])
    got = [R.read_arg("ms_x64", i, regs, stack.read) for i in range(6)]
    assert got == [1, 2, 3, 4, 5, 6]
    R.write_arg("ms_x64", 5, regs, 0x1234, stack.write)
    assert stack.read(0x7030, 8) == (0x1234).to_bytes(8, "little")
    R.write_arg("ms_x64", 0, regs, 42, stack.write)
    assert regs["rcx"] == 42


def test_cdecl_arguments_are_4_byte_stack_slots_above_the_return_address() -> None:
    regs = _regs(rcx=0xBAD, rdx=0xBAD, rsp=0x7000)
    stack = _Stack(0x7000, [0x0000000A_00401000, 0xFFFFFFFF_0000000B])   # ret, arg0 | arg1, arg2
    got = [R.read_arg(R.Abi.CDECL, i, regs, stack.read) for i in range(3)]
    assert got == [0xA, 0xB, 0xFFFFFFFF]
    R.write_arg("cdecl", 1, regs, -2, stack.write)          # truncated to its 4-byte slot
    assert stack.read(0x7008, 4) == (0xFFFFFFFE).to_bytes(4, "little")
    assert stack.read(0x700C, 4) == (0xFFFFFFFF).to_bytes(4, "little")   # arg2 untouched
    assert R.arg_register("cdecl", 0) is None and R.arg_register(R.Abi.MS_X64, 3) == "r9"


def test_abi_tables() -> None:
    assert R.ARG_REGISTERS["sysv"] == ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
    assert R.ARG_REGISTERS["ms_x64"] == ("rcx", "rdx", "r8", "r9")
    assert R.ARG_REGISTERS[R.Abi.CDECL] == ()
    assert R.RETURN_REGISTER == "rax"
    # Every ABI is an enum member equal to the name backends and reports spell.
    assert [str(a) for a in R.Abi] == ["sysv", "ms_x64", "cdecl"] and set(R.ABI_SPECS) == set(R.Abi)
    with pytest.raises(ValueError, match="unknown ABI"):
        R.read_arg("stdcall", 0, _regs(), lambda a, n: b"")
    with pytest.raises(ValueError):
        R.read_arg("sysv", -1, _regs(), lambda a, n: b"")


def test_capabilities_take_an_abi_name_and_refuse_an_unknown_one() -> None:
    from instrument.backend.base import Capabilities

    fields = dict(os="windows", arch="x86", hardware_breakpoints=R.DEBUG_SLOTS, memory_breakpoints=True,
                  follow_forks=True, attach=True)
    assert Capabilities(abi="cdecl", **fields).abi is R.Abi.CDECL
    with pytest.raises(ValueError, match="unknown ABI"):
        Capabilities(abi="pascal", **fields)


# -- debug registers ---------------------------------------------------------------------
def test_dr7_encoding_and_queries() -> None:
    assert R.dr7_with_slot(0, 0, "execute", 1) == 0b1
    assert R.dr7_with_slot(0, 1, "write", 8) == (1 << 2) | (0b01 << 20) | (0b10 << 22)
    dr7 = R.dr7_with_slot(0, 3, "readwrite", 4)
    assert dr7 == (1 << 6) | (0b11 << 28) | (0b11 << 30)
    assert R.dr7_enabled(dr7, 3) and R.dr7_is_watch(dr7, 3) and not R.dr7_enabled(dr7, 2)
    # Re-encoding a slot replaces its bits; other slots and unrelated bits stay.
    both = R.dr7_with_slot(R.dr7_with_slot(0x400, 0, "execute", 1), 0, "write", 2)
    assert both == 0x400 | 0b1 | (0b01 << 16) | (0b01 << 18)
    assert R.dr7_without_slot(both, 0) == 0x400
    assert R.dr6_slots(0b1010 | R.DR6_SINGLE_STEP) == (1, 3)


@pytest.mark.parametrize("slot, access, size, address, message", [
    (R.DEBUG_SLOTS, "execute", 1, None, "slot"),
    (-1, "execute", 1, None, "slot"),
    (0, "read", 1, None, "access"),
    (0, "write", 3, None, "size"),
    (0, "execute", 8, None, "1 byte"),          # one behaviour on both backends: refused
    (0, "write", 4, 0x1002, "aligned"),
    (0, "readwrite", 8, 0x1004, "aligned"),
])
def test_what_debug_registers_cannot_express_is_refused(slot: int, access: str, size: int,
                                                        address: int | None, message: str) -> None:
    from instrument.errors import DebuggerError

    with pytest.raises(DebuggerError, match=message):
        R.check_hardware_breakpoint(slot, access, size, address)
    if address is None:
        with pytest.raises(DebuggerError, match=message):
            R.dr7_with_slot(0, slot, access, size)


def test_watch_alignment_and_execute_addresses() -> None:
    assert R.watch_aligned(0x1000, 8) and R.watch_aligned(0x1006, 2) and not R.watch_aligned(0x1006, 4)
    R.check_hardware_breakpoint(0, "execute", 1, 0x401003)      # instructions sit anywhere


def test_machine_facts() -> None:
    assert R.MASK64 == 0xFFFF_FFFF_FFFF_FFFF and R.PAGE_SIZE == 4096 and R.MAX_INSN == 15
    assert R.to_signed64(R.MASK64) == -1 and R.to_signed64(5) == 5
    assert list(R.pages_of(0x1FFF, 2)) == [0x1000, 0x2000] and list(R.pages_of(0x3000, 0)) == [0x3000]
    assert R.page_of(0x1234) == 0x1000
