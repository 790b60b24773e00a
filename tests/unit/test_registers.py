"""Tests of instrument.registers: the ptrace register layout, sub-registers and ABI argument slots."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from instrument import registers as R

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


def test_abi_tables() -> None:
    assert R.ARG_REGISTERS["sysv"] == ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
    assert R.ARG_REGISTERS["ms_x64"] == ("rcx", "rdx", "r8", "r9")
    assert R.RETURN_REGISTER == "rax"
    with pytest.raises(ValueError, match="unknown ABI"):
        R.read_arg("cdecl", 0, _regs(), lambda a, n: b"")
    with pytest.raises(ValueError):
        R.read_arg("sysv", -1, _regs(), lambda a, n: b"")
