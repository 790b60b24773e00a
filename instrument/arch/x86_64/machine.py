"""Word-level facts of x86-64: the 64-bit mask, the page size, instruction length, canonical addresses."""

from __future__ import annotations

MASK64 = (1 << 64) - 1         # registers and addresses are 64-bit unsigned
PAGE_SIZE = 0x1000             # the 4 KiB page both Linux and Windows protect by
MAX_INSN = 15                  # bytes in the longest legal x86 instruction


def to_signed64(value: int) -> int:
    """A 64-bit register read as two's complement (a system call's -errno)."""
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def is_canonical(address: int) -> bool:
    """x86-64 addresses must sign-extend bit 47; others raise #GP, not a page fault."""
    top = address >> 47
    return top == 0 or top == (1 << 17) - 1


def page_of(address: int) -> int:
    """The first byte of the page holding `address`."""
    return address & ~(PAGE_SIZE - 1)


def pages_of(address: int, size: int) -> range:
    """The pages [address, address + size) touches (one page for size 0)."""
    return range(page_of(address), address + max(size, 1), PAGE_SIZE)
