"""What the Windows backend knows about each debuggee: processes, threads, the held event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...arch.x86_64 import pages_of
from ...events import DebugEvent
from ..base import Module
from .context import Registers
from .guard import GuardBook, Protect


@dataclass
class Thread:
    handle: int
    teb: int = 0
    ctx: Any = None                  # this thread's reused CONTEXT buffer
    regs: Registers | None = None    # filled this stop; None: not read yet
    rearm_page: int | None = None    # a guard page this thread's access consumed


@dataclass
class Process:
    pid: int
    handle: int
    wow64: bool = False
    attached: bool = False
    spawn_handle: int = 0            # CreateProcessW's handle, closed at CREATE_PROCESS
    loader_breaks: int = 0           # loader breakpoints swallowed so far
    threads: dict[int, Thread] = field(default_factory=dict)
    modules: dict[int, Module] = field(default_factory=dict)   # base -> Module, main first
    hw: dict[int, tuple[int, str, int]] = field(default_factory=dict)  # slot -> (address, access, size)
    guards: GuardBook = field(default_factory=GuardBook)


@dataclass
class Held:
    """The debug event WaitForDebugEvent gave us and we have not continued yet."""

    pid: int
    tid: int
    event: DebugEvent
    delivered: bool = False          # returned to the engine by wait_event


class Unguarded:
    """Lift our guard from the pages of [address, address+size) around a read or write:
    ReadProcessMemory on a guard page fails and consumes the guard."""

    def __init__(self, protect: Protect, proc: Process, address: int, size: int) -> None:
        self._protect = protect
        self._book = proc.guards
        self._pages = [p for p in pages_of(address, size) if proc.guards.owns(p)]

    def __enter__(self) -> None:
        for page in self._pages:
            self._book.disarm(page, self._protect)

    def __exit__(self, *exc: object) -> None:
        for page in self._pages:
            self._book.arm(page, self._protect)
