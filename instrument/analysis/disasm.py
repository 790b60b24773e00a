"""x86-64 disassembly of target memory with capstone: a run of instructions, or a window around pc."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from ..arch.x86_64 import MAX_INSN
from ..arch.x86_64.decode import engine
from ..symbols.reader import read_available

ReadMemory = Callable[[int, int], bytes]
BACKTRACK = 30           # how far before pc `around` looks for an instruction boundary
MAX_FUNCTION_WALK = 1 << 16


def _insn(insn: Any) -> dict[str, Any]:
    return {
        "address": insn.address,
        "size": insn.size,
        "text": f"{insn.mnemonic} {insn.op_str}".strip(),
        "bytes": bytes(insn.bytes).hex(),
    }


def disassemble(read_memory: ReadMemory, address: int, count: int) -> list[dict[str, Any]]:
    """Up to `count` instructions from `address` (fewer where memory or decoding ends)."""
    code = read_available(read_memory, address, count * MAX_INSN)
    return [_insn(i) for i in engine().disasm(code, address, count)]


def _walk(code: bytes, start: int, pc: int) -> list[Any] | None:
    """Decode linearly from `start`; the instructions before pc if one ends exactly at pc."""
    insns = []
    for insn in engine().disasm(code, start):
        if insn.address >= pc:
            break
        insns.append(insn)
    end = insns[-1].address + insns[-1].size if insns else start
    return insns if end == pc else None


def _preceding(read_memory: ReadMemory, pc: int, before: int, function_start: int | None) -> list[Any]:
    if function_start is not None and 0 <= pc - function_start <= MAX_FUNCTION_WALK:
        code = read_available(read_memory, function_start, pc - function_start)
        if len(code) == pc - function_start:
            insns = _walk(code, function_start, pc)
            if insns is not None:
                return insns[-before:] if before else []
    if before <= 0:
        return []
    # x86 decoding resynchronises within a few instructions, so most start
    # points land on pc; let them vote on the last `before` instructions.
    votes: Counter[tuple[int, ...]] = Counter()
    found: dict[tuple[int, ...], list[Any]] = {}
    # One read for every start point (a read is a system call): where the window's
    # beginning is unreadable, each start point reads what it can, as before.
    window = read_available(read_memory, pc - BACKTRACK, BACKTRACK)
    for back in range(BACKTRACK, 0, -1):
        if len(window) == BACKTRACK:
            code = window[BACKTRACK - back:]
        else:
            code = read_available(read_memory, pc - back, back)
        if len(code) < back:
            continue
        insns = _walk(code, pc - back, pc)
        if not insns:
            continue
        tail = insns[-before:]
        key = tuple(i.address for i in tail)
        votes[key] += 1
        found.setdefault(key, tail)
    if not votes:
        return []
    best = max(votes, key=lambda k: (len(k), votes[k]))
    return found[best]


def around(read_memory: ReadMemory, pc: int, before: int = 3, after: int = 4,
           function_start: int | None = None) -> list[dict[str, Any]]:
    """Instructions around pc: up to `before` ones ending at pc, the one at pc, `after` more.

    Each entry has `current`, true only for the instruction at pc.
    """
    rows = [dict(_insn(i), current=False) for i in _preceding(read_memory, pc, before, function_start)]
    rows += [dict(r, current=(n == 0)) for n, r in enumerate(disassemble(read_memory, pc, after + 1))]
    return rows
