"""The debug-event handler table: compiled handlers keyed the way the engine dispatches them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..actions import CompileContext, CompiledAction, compile_action
from ..errors import RecipeError
from ..events import DebugEvent, EventCode, ExceptionInfo
from ..expr import Expr
from ..recipe.model import Action


@dataclass(frozen=True)
class Handler:
    """The compiled actions of one handler-section entry (an `events:` key, or `crash:`)."""

    key: str                                 # "load_dll", "access_violation", "any", "crash"
    actions: tuple[CompiledAction, ...]


@dataclass(frozen=True)
class SignalHandlerPlan:
    """A compiled `signals:` entry: what the engine does when signal `signo` is delivered."""

    key: str                                 # the signal's name: "SIGUSR1", "SIGRTMIN+3"
    signo: int
    disposition: str                         # "pass" | "suppress"
    when: Expr | None
    limit: int | None
    actions: tuple[CompiledAction, ...]
    line: int = 0

    @property
    def suppress(self) -> bool:
        return self.disposition == "suppress"


@dataclass(frozen=True)
class SyscallHandler:
    """One `syscalls:` key compiled for one system call it covers (a glob covers several)."""

    key: str                                 # as the recipe wrote it: "openat", "open*", "257"
    number: int
    name: str
    on: str                                  # entry | exit | both
    when: Expr | None
    limit: int | None
    actions: tuple[CompiledAction, ...]
    index: int                               # the key's place in the section: its hit count's slot


@dataclass(frozen=True)
class HandlerTable:
    """WinAppDbg's dispatch order as data: specific exception code, then event code, then
    catch-all. `crash` runs on a last-chance exception, after those."""

    by_exception: dict[int, Handler] = field(default_factory=dict)
    by_event: dict[EventCode, Handler] = field(default_factory=dict)
    catch_all: Handler | None = None
    crash: Handler | None = None
    by_signal: dict[int, SignalHandlerPlan] = field(default_factory=dict)   # signal number -> handler
    # System call number -> its handlers, in recipe order (engine/syscalls.py runs them).
    syscalls: dict[int, tuple[SyscallHandler, ...]] = field(default_factory=dict)

    @property
    def syscall_numbers(self) -> frozenset[int]:
        """The calls that must stop the target."""
        return frozenset(self.syscalls)

    @property
    def syscall_exits(self) -> frozenset[int]:
        """The calls whose exit must stop it too."""
        return frozenset(n for n, hs in self.syscalls.items() if any(h.on != "entry" for h in hs))

    def lookup(self, event: DebugEvent) -> list[Handler]:
        found: list[Handler] = []
        if isinstance(event.info, ExceptionInfo) and event.info.code in self.by_exception:
            found.append(self.by_exception[event.info.code])
        if event.code in self.by_event:
            found.append(self.by_event[event.code])
        if self.catch_all is not None:
            found.append(self.catch_all)
        return found


@dataclass
class TableBuilder:
    """The table while the sections fill it in (compiler/sections); `build` freezes it."""

    by_exception: dict[int, Handler] = field(default_factory=dict)
    by_event: dict[EventCode, Handler] = field(default_factory=dict)
    catch_all: Handler | None = None
    crash: Handler | None = None
    by_signal: dict[int, SignalHandlerPlan] = field(default_factory=dict)
    syscalls: dict[int, list[SyscallHandler]] = field(default_factory=dict)

    def build(self) -> HandlerTable:
        return HandlerTable(dict(self.by_exception), dict(self.by_event), self.catch_all, self.crash,
                            by_signal=dict(self.by_signal),
                            syscalls={n: tuple(hs) for n, hs in self.syscalls.items()})


def compile_actions(actions: Iterable[Action], ctx: CompileContext,
                    errors: list[RecipeError]) -> tuple[CompiledAction, ...]:
    """Compile each action; a bad one goes into `errors` and the rest are still checked."""
    compiled = []
    for action in actions:
        try:
            compiled.append(compile_action(action, ctx))
        except RecipeError as e:
            errors.append(e)
    return tuple(compiled)
