"""The x86-64 register file: ptrace's register names, sub-registers, and ABI argument slots."""

from __future__ import annotations

from typing import Callable, Mapping, MutableMapping

# The fields of Linux's `struct user_regs_struct` (sys/user.h), in memory
# order: the Linux backend lays its ctypes structure out from this tuple, so
# the order is ABI, not taste.
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

MASK64 = (1 << 64) - 1

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

ARG_REGISTERS: dict[str, tuple[str, ...]] = {
    "sysv": ("rdi", "rsi", "rdx", "rcx", "r8", "r9"),
    "ms_x64": ("rcx", "rdx", "r8", "r9"),
}

RETURN_REGISTER = "rax"

# Where the first stack-passed argument lives at function entry, relative to
# rsp: SysV has only the return address above it (rsp+8); the Microsoft x64
# ABI also reserves 32 bytes of home space for rcx/rdx/r8/r9, so arg4 is at
# rsp+0x28 and arg5 at rsp+0x30.
_FIRST_STACK_ARG = {"sysv": 0x8, "ms_x64": 0x28}

ReadMemory = Callable[[int, int], bytes]
WriteMemory = Callable[[int, bytes], None]


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


def _stack_slot(abi: str, index: int, regs: Mapping[str, int]) -> int:
    """The address of stack-passed argument `index` at function entry."""
    in_registers = len(ARG_REGISTERS[abi])
    return (regs["rsp"] + _FIRST_STACK_ARG[abi] + 8 * (index - in_registers)) & MASK64


def _check_arg(abi: str, index: int) -> None:
    if abi not in ARG_REGISTERS:
        raise ValueError(f"unknown ABI {abi!r}; expected one of {sorted(ARG_REGISTERS)}")
    if index < 0:
        raise ValueError(f"argument index must be >= 0, got {index}")


def read_arg(abi: str, index: int, regs: Mapping[str, int], read_memory: ReadMemory) -> int:
    """Integer argument `index` (0-based) of the function just entered, under `abi`.

    Only exact at function entry: after the prologue rsp has moved and the
    callee may have reused the argument registers.
    """
    _check_arg(abi, index)
    names = ARG_REGISTERS[abi]
    if index < len(names):
        return regs[names[index]] & MASK64
    data = read_memory(_stack_slot(abi, index, regs), 8)
    if len(data) != 8:
        raise ValueError(f"short read of stack argument {index}")
    return int.from_bytes(data, "little")


def write_arg(
    abi: str,
    index: int,
    regs: MutableMapping[str, int],
    value: int,
    write_memory: WriteMemory,
) -> None:
    """Replace integer argument `index` of the function just entered, under `abi`."""
    _check_arg(abi, index)
    names = ARG_REGISTERS[abi]
    if index < len(names):
        regs[names[index]] = value & MASK64
        return
    write_memory(_stack_slot(abi, index, regs), (value & MASK64).to_bytes(8, "little"))
