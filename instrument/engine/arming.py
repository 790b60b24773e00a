"""Where each recipe breakpoint is armed, in every process: resolve, arm, disarm, follow loads and forks."""

from __future__ import annotations

from typing import Iterator, Sequence

from ..compiler.model import BreakpointPlan
from ..compiler.patterns import PatternSet
from ..errors import DebuggerError, EvaluationError
from ..events import Module
from .breakpoints import Breakpoint, make_breakpoint
from .process import ProcessState
from .records import Recorder
from .sites import IFUNC_USER
from .stop import StopEnv, StopHost


class BreakpointSet:
    """The recipe's breakpoints by id, in recipe order, and their placement in processes.

    `processes` is the session's own dict (pid -> ProcessState), shared: a breakpoint
    enabled, disabled or spent is armed or disarmed in every process traced now."""

    def __init__(self, plans: Sequence[BreakpointPlan], host: StopHost, processes: dict[int, ProcessState],
                 recorder: Recorder, *, recipe_file: str, attached: bool,
                 patterns: PatternSet | None = None) -> None:
        self.by_id: dict[str, Breakpoint] = {p.id: make_breakpoint(p) for p in plans}
        self.order: list[str] = [p.id for p in plans]
        self._rank = {bp_id: i for i, bp_id in enumerate(self.order)}
        # Symbol patterns (compiler/patterns.py) add breakpoints as the modules they match appear.
        self.patterns = patterns.expander() if patterns else None
        self.host, self.processes, self.recorder = host, processes, recorder
        self.recipe_file = recipe_file
        self.attached = attached       # modules of an attached process are relocated already
        # A soft breakpoint became a uprobe somewhere (at its arming, or at a stop: hits.py).
        # The Linux backend then lets a target it pinned to our CPU go: no stop to make cheap.
        self.sampling_soft = False

    def __getitem__(self, bp_id: str) -> Breakpoint:
        return self.by_id[bp_id]

    def __contains__(self, bp_id: object) -> bool:
        return bp_id in self.by_id

    def __iter__(self) -> Iterator[Breakpoint]:
        """In recipe order."""
        return (self.by_id[bp_id] for bp_id in self.order)

    def __len__(self) -> int:
        return len(self.order)

    def rank(self, user: str) -> int:
        """The order the users of one int3 run in: returns and resolvers first, then the
        breakpoints as the recipe lists them."""
        return self._rank.get(user, -1)

    # -- enable / disable (actions) -------------------------------------------------
    def set_enabled(self, bp_id: str, enabled: bool) -> None:
        members = self.patterns.set_enabled(bp_id, enabled) if self.patterns is not None else None
        for one in members if members is not None else [bp_id]:   # a pattern: each function of it
            bp = self.by_id[one]
            if enabled:
                bp.enable()
            else:
                bp.disable()
            for process in self.processes.values():
                if bp.active:
                    self.arm(process, bp)
                elif not enabled:
                    self.disarm(process, bp)

    # -- symbol patterns ------------------------------------------------------------
    def expand_patterns(self, module: Module, *, main: bool) -> None:
        """A module appeared: the breakpoints of the patterns that match functions in it."""
        if self.patterns is None:
            return
        for plan in self.patterns.expand(module, main, self.by_id):
            self.by_id[plan.id] = make_breakpoint(plan)
            self._rank[plan.id] = len(self.order)
            self.order.append(plan.id)
        for message in self.patterns.take_warnings():
            self.recorder.warn_once(message)

    def final_warnings(self) -> list[str]:
        """Patterns that armed nothing (their module never loaded), for the summary."""
        return self.patterns.final_warnings() if self.patterns is not None else []

    def _drop_twin(self, bp: Breakpoint) -> None:
        """Forget a breakpoint a pattern added whose code another of its breakpoints has
        (memcpy and memmove resolved to one implementation): one record per call."""
        if not any(bp.id in p.armed for p in self.processes.values()):
            del self.by_id[bp.id]
            self.order.remove(bp.id)

    def spent(self, bp: Breakpoint) -> None:
        """`bp` reached its limit: out of every process."""
        for process in self.processes.values():
            try:
                self.disarm(process, bp)
            except DebuggerError:
                pass      # its process is gone, its exit event not handled yet

    # -- arming -------------------------------------------------------------------
    def resolve(self, process: ProcessState, bp: Breakpoint) -> int | None:
        """Where `bp.plan.at` points in `process` now; None: not yet (a module not loaded)."""
        env = StopEnv(self.host, process, 0, None, {}, variables=False)
        try:
            return int(bp.plan.at.evaluate(env))
        except EvaluationError:
            return None

    def arm(self, process: ProcessState, bp: Breakpoint) -> None:
        if bp.id in process.armed or not bp.active or bp.id in process.unarmable:
            return
        address = self.resolve(process, bp)
        if address is None:
            return
        if bp.executes:
            address = self.code_address(process, address)
            if address is None:
                return         # armed once the loader has run the resolver (hits.on_return_hit)
            if self.patterns is not None and self.patterns.twin(bp.id, address, process.placed):
                self._drop_twin(bp)   # the same code as another function of its pattern
                return
        try:
            process.armed[bp.id] = bp.place(process, address)
            process.placed[bp.id] = address
            bp.ever_armed = True
            if process.sampled and address in process.sampled:
                self.sampling_soft = True
        except (DebuggerError, EvaluationError) as e:
            # One bad address must not end the session nor be retried at every load.
            process.unarmable.add(bp.id)
            self.recorder.warn_once(f"breakpoint {bp.id} ({self.recipe_file}:{bp.plan.line}) "
                                    f"not armed at {address:#x}: {e}")

    def arm_all(self, process: ProcessState) -> None:
        for bp in list(self):      # a copy: arming may drop a pattern's twin
            self.arm(process, bp)

    def code_address(self, process: ProcessState, address: int) -> int | None:
        """Where a code breakpoint on `address` must go; None: not known yet.

        A GNU indirect function (glibc's strcpy, memcpy, strlen) is a resolver that the
        loader runs to pick this CPU's implementation: the calls go there, so does the
        breakpoint, as in gdb. A module that is relocated already (a library loaded at
        start-up, or any module of an attached process) has its resolver run now, in
        the target. Otherwise (a dlopen()ed library, whose GOT is not filled in yet; the
        main image of a static program, before libc has probed the CPU) the resolver is
        watched, and what it returns to the loader says where the breakpoint goes."""
        if not process.modules.is_ifunc(address):
            return address
        target = process.ifunc_targets.get(address)
        if target is not None:
            return target
        if self.attached or not process.modules.in_main_image(address):
            try:
                target = process.backend.call_function(process.pid, address)
                if process.modules.find(target) is None:
                    raise DebuggerError(f"it returned {target:#x}, outside every module")
            except DebuggerError:
                target = None          # not relocated yet: watch the loader run it
        if target is None:
            process.add_user(address, IFUNC_USER)
            return None
        self.resolved_indirect(process, address, target)
        return target

    def resolved_indirect(self, process: ProcessState, resolver: int, target: int) -> None:
        process.ifunc_targets[resolver] = target
        process.modules.name_indirect(target, resolver)
        process.drop_user(resolver, IFUNC_USER)

    def disarm(self, process: ProcessState, bp: Breakpoint, *, unmapped: bool = False) -> None:
        """Take `bp` out of `process`; `unmapped`: its memory is gone (the module was
        unloaded), so there is nothing to write back, and nothing may be."""
        where = process.armed.pop(bp.id, None)
        process.placed.pop(bp.id, None)
        if where is not None:
            bp.lift(process, where, unmapped=unmapped)

    def disarm_all(self, process: ProcessState) -> None:
        for bp in self:
            self.disarm(process, bp)

    # -- modules and forks ----------------------------------------------------------
    def forget_module(self, process: ProcessState, start: int, end: int) -> None:
        """An unloaded module took our int3s, guarded pages and pending returns in it
        along: forget them without writing (another library may be mapped there
        next), so its breakpoints arm again when it is loaded again."""
        inside = range(start, end)
        for bp_id in [b for b, address in process.placed.items() if address in inside]:
            self.disarm(process, self.by_id[bp_id], unmapped=True)
        for address in [a for a in process.sites if a in inside]:
            del process.sites[address]             # return sites of frames that were in it
        for address in [a for a in process.returns if a in inside]:
            del process.returns[address]
        process.retired = {a for a in process.retired if a not in inside}
        process.ifunc_targets = {r: t for r, t in process.ifunc_targets.items() if r not in inside}

    def inherit_fork(self, parent: ProcessState, child: ProcessState) -> None:
        """A fork child starts with what it inherits of its parent's breakpoints: the int3s
        in its copy of the memory, and the debug registers the backend copies into it."""
        child.inherit_sites(parent)
        child.armed = {bp_id: where for bp_id, where in parent.armed.items()
                       if self.by_id[bp_id].inherited_by_fork}
        for slot, bp_id in parent.hw_slots.items():
            child.hw_slots[slot] = bp_id
            child.armed[bp_id] = slot
        child.placed = {bp_id: parent.placed[bp_id] for bp_id in child.armed if bp_id in parent.placed}
