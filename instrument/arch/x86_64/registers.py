"""The x86-64 register file: ptrace's register names, sub-registers, reads and writes of any of them."""

from __future__ import annotations

from typing import Mapping, MutableMapping

from .machine import MASK64

# The fields of Linux's `struct user_regs_struct` (sys/user.h), in memory
# order: the Linux backend lays its ctypes structure out from this tuple, so
# the order is ABI, not taste. Every backend names registers this way (a
# Windows CONTEXT is mapped onto these names too).
USER_REGS_FIELDS: tuple[str, ...] = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
    "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)

# What `log: {registers: all}` prints, in the order people read them.
GENERAL_REGISTERS: tuple[str, ...] = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rip", "eflags",
)

# x86-64 register numbers (ModRM/opcode encoding order) -> register names.
REG64: tuple[str, ...] = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                          "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

RETURN_REGISTER = "rax"

_FULL = frozenset(USER_REGS_FIELDS)


def _build_sub_registers() -> dict[str, tuple[str, int, int]]:
    """name -> (full register, bit shift, bit width) for every partial register."""
    table: dict[str, tuple[str, int, int]] = {}
    # The four legacy registers with a high-byte alias (ah, bh, ch, dh).
    for letter in "abcd":
        full = f"r{letter}x"
        table[f"e{letter}x"] = (full, 0, 32)
        table[f"{letter}x"] = (full, 0, 16)
        table[f"{letter}l"] = (full, 0, 8)
        table[f"{letter}h"] = (full, 8, 8)
    # si/di/bp/sp: their low bytes (sil, dil, bpl, spl) need a REX prefix.
    for base in ("si", "di", "bp", "sp"):
        full = f"r{base}"
        table[f"e{base}"] = (full, 0, 32)
        table[base] = (full, 0, 16)
        table[f"{base}l"] = (full, 0, 8)
    for n in range(8, 16):
        full = f"r{n}"
        table[f"r{n}d"] = (full, 0, 32)
        table[f"r{n}w"] = (full, 0, 16)
        table[f"r{n}b"] = (full, 0, 8)
    table["eip"] = ("rip", 0, 32)
    table["ip"] = ("rip", 0, 16)
    table["flags"] = ("eflags", 0, 16)
    return table


SUB_REGISTERS: dict[str, tuple[str, int, int]] = _build_sub_registers()

ALL_REGISTERS: frozenset[str] = _FULL | frozenset(SUB_REGISTERS)


def is_register(name: str) -> bool:
    """True for a full register name or any sub-register alias (eax, r8d, sil, flags...)."""
    return name in ALL_REGISTERS


def full_register(name: str) -> str:
    """The user_regs_struct field that holds `name` (rax for al, rip for eip)."""
    if name in _FULL:
        return name
    if name in SUB_REGISTERS:
        return SUB_REGISTERS[name][0]
    raise KeyError(f"unknown register {name!r}")


def read_register(regs: Mapping[str, int], name: str) -> int:
    """The unsigned value of register `name`, cut out of its full register."""
    if name in _FULL:
        return regs[name] & MASK64
    try:
        full, shift, width = SUB_REGISTERS[name]
    except KeyError:
        raise KeyError(f"unknown register {name!r}") from None
    return (regs[full] >> shift) & ((1 << width) - 1)


def write_register(regs: MutableMapping[str, int], name: str, value: int) -> None:
    """Store `value` (two's complement if negative) in register `name`.

    As on the CPU, a 32-bit write zero-extends into the 64-bit register
    (`mov eax, 1` clears rax's upper half) while 16- and 8-bit writes merge,
    leaving the other bits alone.
    """
    if name in _FULL:
        regs[name] = value & MASK64
        return
    try:
        full, shift, width = SUB_REGISTERS[name]
    except KeyError:
        raise KeyError(f"unknown register {name!r}") from None
    field = (1 << width) - 1
    if width == 32:
        regs[full] = value & field
        return
    old = regs[full] & MASK64
    regs[full] = (old & ~(field << shift) & MASK64) | ((value & field) << shift)
