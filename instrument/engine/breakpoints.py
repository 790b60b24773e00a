"""Recipe breakpoints as explicit state machines, one class per kind (HOUSE.md rule 5).

A `Breakpoint` is one recipe breakpoint across the whole session: its state
and its hit count. Its kind (soft, hardware, memory) knows how to place it in
one process and how to lift it out again; the session decides when (arming.py).

States, after WinAppDbg's (disabled, enabled, one-shot, running):

    DISABLED --enable--> ENABLED or ONE_SHOT       (ONE_SHOT: one hit left before its limit)
    ENABLED  --disable-> DISABLED
    ENABLED  --hit-----> ENABLED, or ONE_SHOT when one hit is left
    ONE_SHOT --disable-> DISABLED
    ONE_SHOT --hit-----> SPENT                     (armed nowhere, and no `enable` brings it back)

WinAppDbg's one-shot breakpoint goes back to DISABLED after its hit; here a
breakpoint that reached its `limit` stays out for good, so that end has a name
of its own. RUNNING (an int3 out while a thread steps over it) is a state of
the int3 byte, shared by every breakpoint at its address: sites.SiteState.
"""

from __future__ import annotations

import abc
import enum
from typing import ClassVar

from ..compiler.model import BreakpointPlan
from ..errors import DebuggerError
from .inspect import soft_site_problem
from .process import ProcessState


class State(enum.Enum):
    DISABLED = "disabled"     # by `enabled: false` or a `disable` action: armed nowhere
    ENABLED = "enabled"       # armed in every process where its address resolves
    ONE_SHOT = "one-shot"     # enabled, and its next accepted hit reaches its limit
    SPENT = "spent"           # reached its limit: armed nowhere, for good


_DISABLED, _ENABLED, _ONE_SHOT, _SPENT = State.DISABLED, State.ENABLED, State.ONE_SHOT, State.SPENT


class Breakpoint(abc.ABC):
    """One recipe breakpoint: the state machine above, and where a kind places it."""

    kind: ClassVar[str]
    inherited_by_fork: ClassVar[bool]     # a fork child gets it armed as its parent had it

    def __init__(self, plan: BreakpointPlan) -> None:
        self.plan = plan
        self.id = plan.id
        self.hits = 0
        self.ever_armed = False       # reported in the summary when never: a module that never loaded
        self.state = _DISABLED
        # Armed wherever it can be, and its hits count: ENABLED or ONE_SHOT. Kept with
        # `state` (by _become) because every hit asks it.
        self.active = False
        # It traps on executing its address, which therefore must be code (an indirect
        # function's resolver stands for the implementation it picks).
        self.executes = self._executes()
        if plan.enabled:
            self.enable()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.value} hits={self.hits}>"

    @property
    def sampled(self) -> bool:
        """Its hits are reported without stopping the thread (the plan's choice)."""
        return self.plan.sampled

    def _executes(self) -> bool:
        return self.plan.access == "execute"

    def _become(self, state: State) -> None:
        self.state = state
        self.active = state is _ENABLED or state is _ONE_SHOT

    def _enabled_state(self) -> State:
        limit = self.plan.limit
        if limit is None:
            return _ENABLED
        left = limit - self.hits
        return _SPENT if left <= 0 else _ONE_SHOT if left == 1 else _ENABLED

    def enable(self) -> None:
        if self.state is _DISABLED:
            self._become(self._enabled_state())

    def disable(self) -> None:
        if self.active:
            self._become(_DISABLED)

    def hit(self) -> None:
        """Count an accepted hit (only an active breakpoint has them): ENABLED stays so
        until one hit is left (ONE_SHOT), ONE_SHOT becomes SPENT."""
        self.hits += 1
        limit = self.plan.limit
        if limit is not None and limit - self.hits <= 1:      # else: ENABLED, as it was
            self._become(self._enabled_state())

    # -- placing it in one process: the kinds ---------------------------------------
    @abc.abstractmethod
    def place(self, process: ProcessState, address: int) -> int:
        """Arm it at `address` in `process`; return where it went (an address or a
        debug-register slot), for `lift`. Raises DebuggerError."""

    @abc.abstractmethod
    def lift(self, process: ProcessState, where: int, *, unmapped: bool = False) -> None:
        """Take it out of `process` from `where`; `unmapped`: that memory is gone (its
        module was unloaded), so nothing may be written back."""


class SoftBreakpoint(Breakpoint):
    """An int3 (shared with the other users of its address: sites.SoftSite)."""

    kind = "soft"
    inherited_by_fork = True          # the child's memory is a copy, int3s included

    def _executes(self) -> bool:
        return True

    def place(self, process: ProcessState, address: int) -> int:
        problem = soft_site_problem(process, address)
        if problem is not None:
            raise DebuggerError(problem)
        if self.plan.sampled and self.plan.sample_after:
            # An int3 first, a uprobe after so many stops (engine/hits.py).
            process.add_adaptive_user(address, self.id, self.plan.sample_after)
        elif self.plan.sampled:
            # A uprobe where the backend can (the summary says why where not: an int3).
            process.add_sampled_user(address, self.id)
        else:
            process.add_user(address, self.id)
        return address

    def lift(self, process: ProcessState, where: int, *, unmapped: bool = False) -> None:
        if not process.drop_sampled_user(where, self.id):
            process.drop_user(where, self.id, write=not unmapped)


class HardwareBreakpoint(Breakpoint):
    """A debug register, in every thread of the process (and threads created later)."""

    kind = "hardware"
    inherited_by_fork = True          # the backend copies the debug registers into the child

    def place(self, process: ProcessState, address: int) -> int:
        backend = process.backend
        slot = next(s for s in range(backend.capabilities.hardware_breakpoints) if s not in process.hw_slots)
        backend.set_hardware_breakpoint(process.pid, slot, address, self.plan.access or "execute",
                                        self.plan.size, sample=self.plan.sampled)
        process.hw_slots[slot] = self.id
        return slot

    def lift(self, process: ProcessState, where: int, *, unmapped: bool = False) -> None:
        process.hw_slots.pop(where, None)
        if process.alive:
            process.backend.clear_hardware_breakpoint(process.pid, where)


class MemoryBreakpoint(Breakpoint):
    """Guard pages over [address, address + size)."""

    kind = "memory"
    inherited_by_fork = False         # page protections are the backend's, per process

    def place(self, process: ProcessState, address: int) -> int:
        process.backend.set_memory_breakpoint(process.pid, address, self.plan.size, self.plan.access or "any")
        process.guards[address] = (self.id, self.plan.size)
        return address

    def lift(self, process: ProcessState, where: int, *, unmapped: bool = False) -> None:
        process.guards.pop(where, None)
        if process.alive:
            try:
                process.backend.clear_memory_breakpoint(process.pid, where)
            except DebuggerError:
                if not unmapped:
                    raise       # unmapped: the backend has forgotten the page all the same


KINDS: dict[str, type[Breakpoint]] = {k.kind: k for k in (SoftBreakpoint, HardwareBreakpoint, MemoryBreakpoint)}


def make_breakpoint(plan: BreakpointPlan) -> Breakpoint:
    return KINDS[plan.type](plan)
