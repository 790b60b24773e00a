"""Calling conventions: the `Abi` every backend names, and where a function's integer arguments live at entry."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Mapping, MutableMapping

from .machine import MASK64

ReadMemory = Callable[[int, int], bytes]
WriteMemory = Callable[[int, bytes], None]


class Abi(enum.StrEnum):
    """The calling convention of a debuggee's functions (`Capabilities.abi`).

    A StrEnum, so each member equals its name as a string ("sysv"), as the
    backends and reports spelled it before."""

    SYSV = "sysv"          # Linux x86-64 (System V AMD64 psABI)
    MS_X64 = "ms_x64"      # Windows x64
    CDECL = "cdecl"        # 32-bit x86 (a 32-bit Windows debuggee): every argument on the stack


@dataclass(frozen=True)
class AbiSpec:
    """Where integer arguments are at a function's first instruction."""

    arg_registers: tuple[str, ...]   # the first arguments, in order
    first_stack_arg: int             # rsp offset of the first argument passed on the stack
    slot: int                        # bytes per stack argument


ABI_SPECS: dict[Abi, AbiSpec] = {
    # SysV: only the return address sits between rsp and the first stack argument.
    Abi.SYSV: AbiSpec(("rdi", "rsi", "rdx", "rcx", "r8", "r9"), 0x8, 8),
    # Microsoft x64 also reserves 32 bytes of home space for rcx/rdx/r8/r9, so
    # arg4 is at rsp+0x28 and arg5 at rsp+0x30.
    Abi.MS_X64: AbiSpec(("rcx", "rdx", "r8", "r9"), 0x28, 8),
    # cdecl: [esp] is the 4-byte return address, arguments follow in 4-byte
    # slots (a WOW64 context names esp "rsp", like every register here).
    Abi.CDECL: AbiSpec((), 0x4, 4),
}

# abi -> the registers of its first integer arguments (empty for cdecl).
ARG_REGISTERS: dict[Abi, tuple[str, ...]] = {abi: spec.arg_registers for abi, spec in ABI_SPECS.items()}


def abi_of(name: Abi | str) -> Abi:
    """The Abi named `name`; ValueError for a convention this module does not know."""
    try:
        return Abi(name)
    except ValueError:
        raise ValueError(f"unknown ABI {name!r}; expected one of {sorted(a.value for a in Abi)}") from None


def arg_register(abi: Abi | str, index: int) -> str | None:
    """The register holding integer argument `index` at entry; None when it is on the stack."""
    names = ABI_SPECS[abi_of(abi)].arg_registers
    return names[index] if 0 <= index < len(names) else None


def _spec(abi: Abi | str, index: int) -> AbiSpec:
    spec = ABI_SPECS[abi_of(abi)]
    if index < 0:
        raise ValueError(f"argument index must be >= 0, got {index}")
    return spec


def _stack_slot(spec: AbiSpec, index: int, regs: Mapping[str, int]) -> int:
    """The address of stack-passed argument `index` at function entry."""
    return (regs["rsp"] + spec.first_stack_arg + spec.slot * (index - len(spec.arg_registers))) & MASK64


def read_arg(abi: Abi | str, index: int, regs: Mapping[str, int], read_memory: ReadMemory) -> int:
    """Integer argument `index` (0-based) of the function just entered, under `abi`.

    Only exact at function entry: after the prologue rsp has moved and the
    callee may have reused the argument registers.
    """
    spec = _spec(abi, index)
    if index < len(spec.arg_registers):
        return regs[spec.arg_registers[index]] & MASK64
    data = read_memory(_stack_slot(spec, index, regs), spec.slot)
    if len(data) != spec.slot:
        raise ValueError(f"short read of stack argument {index}")
    return int.from_bytes(data, "little")


def write_arg(
    abi: Abi | str,
    index: int,
    regs: MutableMapping[str, int],
    value: int,
    write_memory: WriteMemory,
) -> None:
    """Replace integer argument `index` of the function just entered, under `abi`."""
    spec = _spec(abi, index)
    if index < len(spec.arg_registers):
        regs[spec.arg_registers[index]] = value & MASK64
        return
    mask = (1 << (8 * spec.slot)) - 1
    write_memory(_stack_slot(spec, index, regs), (value & mask).to_bytes(spec.slot, "little"))
