"""The debug loop: wait for an event, dispatch it through the plan, continue — always continue.

One `Session` drives one target (and, with follow_forks, its children)
through a backend. Dispatch is a table lookup: int3 addresses -> SoftSite,
debug-register slots and guarded ranges -> breakpoints, everything else ->
the plan's HandlerTable. Every stop ends in `resume`, in a `finally`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import interrupts
from ..backend.base import Backend, Module
from ..errors import DebuggerError, EvaluationError, InstrumentError, RecipeError, TargetLost
from ..events import (CreateProcessInfo, DebugEvent, EventCode, ExceptionInfo, ExitProcessInfo, LoadDllInfo,
                      UnloadDllInfo)
from .breakpoints import BreakpointState, PendingReturn, SoftSite
from .context import StopContext, StopEnv
from .hits import IFUNC_USER, RETURN_USER, HitHandling
from .records import event_fields, record_fields
from .sampling import can_sample



@dataclass
class ProcessState:
    pid: int
    backend: Backend
    modules: Any                                       # symbols.modules.ModuleMap
    sites: dict[int, SoftSite] = field(default_factory=dict)
    armed: dict[str, list[int]] = field(default_factory=dict)     # bp id -> addresses (soft) / [slot] / [addr]
    placed: dict[str, int] = field(default_factory=dict)          # bp id -> the address it is armed at
    hw_slots: dict[int, str] = field(default_factory=dict)        # slot -> bp id
    guards: dict[int, tuple[str, int]] = field(default_factory=dict)  # address -> (bp id, size)
    returns: dict[int, list[PendingReturn]] = field(default_factory=dict)
    image_path: str = ""
    alive: bool = True
    unarmable: set[str] = field(default_factory=set)    # bp ids whose address cannot take them
    retired: set[int] = field(default_factory=set)      # addresses whose int3 we have taken out
    ifunc_targets: dict[int, int] = field(default_factory=dict)   # indirect function -> implementation

    def read(self, address: int, size: int) -> bytes:
        """Target memory as the program sees it: the original bytes under our int3s."""
        data = self.backend.read_memory(self.pid, address, size)
        for site in self.sites.values():
            if site.inserted and address <= site.address < address + size:
                off = site.address - address
                data = data[:off] + site.original + data[off + 1:]
        return data

    def write(self, address: int, data: bytes) -> None:
        """Write target memory, keeping our int3 bytes in place over a patch."""
        end = address + len(data)
        for site in self.sites.values():
            if site.address + len(site.code) > address and site.address < end:
                # Keep the saved instruction bytes in step with what the program now holds.
                code = bytearray(site.code)
                for i in range(max(address, site.address), min(end, site.address + len(code))):
                    code[i - site.address] = data[i - address]
                site.code = bytes(code)
            if site.inserted and address <= site.address < end:
                off = site.address - address
                site.original = data[off:off + 1]
                data = data[:off] + b"\xcc" + data[off + 1:]
        self.backend.write_memory(self.pid, address, data)

    def site(self, address: int) -> SoftSite:
        if address not in self.sites:
            self.sites[address] = SoftSite(address)
        return self.sites[address]

    def add_user(self, address: int, user: str) -> None:
        site = self.site(address)
        site.users.add(user)
        site.insert(self.read, self.raw_write)

    def raw_write(self, address: int, data: bytes) -> None:
        self.backend.write_memory(self.pid, address, data)

    def drop_user(self, address: int, user: str, *, write: bool = True) -> None:
        site = self.sites.get(address)
        if site is None:
            return
        site.users.discard(user)
        if not site.users:
            if self.alive and write:
                site.remove(self.raw_write)
                self.retired.add(address)
            del self.sites[address]

    def retired_trap(self, address: int) -> bool:
        """Whether an int3 trap at `address` came from an int3 of ours that is gone now:
        another thread ran into it before we took it out (a spent breakpoint, a return
        site no thread waits on), and its trap was still queued. Such a trap must not
        reach the program, whose SIGTRAP would kill it."""
        if address not in self.retired:
            return False
        try:
            return self.backend.read_memory(self.pid, address, 1) != b"\xcc"
        except DebuggerError:
            return False


_EXCEPTION_EVENT = EventCode.EXCEPTION_DEBUG_EVENT


class SessionEnd(Exception):
    """Raised inside dispatch to end the loop the way an action or the timeout asked."""


class Session(HitHandling):
    def __init__(self, plan: Any, backend: Backend, emit: Callable[[dict[str, Any]], None], *,
                 all_events: bool = False, out_dir: str | Path = ".", inspector: Any = None,
                 module_map_factory: Callable[[], Any] | None = None, sample_hits: bool = True) -> None:
        from .inspect import Inspector
        from ..symbols.modules import ModuleMap

        self.plan, self.backend = plan, backend
        self.emit = emit               # every record goes out through here
        self.all_events = all_events
        self.out_dir = Path(out_dir)
        self.abi = backend.capabilities.abi
        self.inspector = inspector or Inspector(backend, getattr(plan, "rules", ()))
        self.new_module_map = module_map_factory or ModuleMap
        available = backend.capabilities.sampled_registers if sample_hits else frozenset()
        self.breakpoints = {bp.id: BreakpointState(bp, enabled=bp.enabled,
                                                   sampled=can_sample(bp, self.abi, available))
                            for bp in plan.breakpoints}
        self.order = [bp.id for bp in plan.breakpoints]
        self.sample_with = available
        # Symbol patterns (compiler/patterns.py) add breakpoints as the modules they match appear.
        patterns = getattr(plan, "patterns", None)
        self.patterns = patterns.expander() if patterns else None
        self.processes: dict[int, ProcessState] = {}
        self.start = time.monotonic()
        self.end_request: str | None = None
        self.ended_how = "exited"
        self.exit_code: int | None = None
        self.exit_signal: str | None = None
        self.crashed = False
        self.attached = False
        self.main_pid: int | None = None
        self.started = False               # the first CREATE_PROCESS has arrived
        self.errors: list[str] = []
        backend.patched_bytes = self.patched_bytes

    @property
    def runs_on_at_hits(self) -> bool:
        """Every breakpoint is sampled: no hit stops the target. One CPU for tracer and
        target makes stops cheaper; without stops, two let the target run while the
        tracer writes records."""
        return bool(self.breakpoints) and all(s.sampled for s in self.breakpoints.values())

    # -- records --------------------------------------------------------
    def record(self, event: str, code: int | None, pid: int, tid: int, *, at: float | None = None,
               **fields: Any) -> dict[str, Any]:
        """A record of something that happened `at` (time.monotonic(); default: now)."""
        return {"event": event, "code": code, "pid": pid, "tid": tid,
                "time": round((time.monotonic() if at is None else at) - self.start, 6), **fields}

    # -- control requested by actions ---------------------------------------
    def request_end(self, how: str) -> None:
        self.end_request = how

    def set_enabled(self, bp_id: str, enabled: bool) -> None:
        members = self.patterns.set_enabled(bp_id, enabled) if self.patterns is not None else None
        for one in members if members is not None else [bp_id]:   # a pattern: each function of it
            state = self.breakpoints[one]
            state.enabled = enabled
            for process in self.processes.values():
                if enabled and not state.spent:
                    self.arm(process, state)
                elif not enabled:
                    self.disarm(process, state)

    def expand_patterns(self, module: Module, *, main: bool) -> None:
        """A module appeared: the breakpoints of the patterns that match functions in it."""
        if self.patterns is None:
            return
        for bp in self.patterns.expand(module, main, self.breakpoints):
            self.breakpoints[bp.id] = BreakpointState(bp, enabled=bp.enabled,
                                                      sampled=can_sample(bp, self.abi, self.sample_with))
            self.order.append(bp.id)
        for message in self.patterns.take_warnings():
            self._warn_once(message)

    # -- arming ---------------------------------------------------------------
    def resolve(self, process: ProcessState, state: BreakpointState) -> int | None:
        env = StopEnv(self, process, 0, None, {})
        try:
            return int(state.plan.at.evaluate(env))
        except EvaluationError:
            return None

    def arm(self, process: ProcessState, state: BreakpointState) -> None:
        if state.id in process.armed or not state.active or state.id in process.unarmable:
            return
        address = self.resolve(process, state)
        if address is None:
            return
        plan = state.plan
        if plan.type == "soft" or plan.access == "execute":
            address = self.code_address(process, state, address)
            if address is None:
                return         # armed once the loader has run the resolver (on_resolver_hit)
            if self.patterns is not None and self.patterns.twin(state.id, address, process.placed):
                self._drop_twin(state)   # the same code as another function of its pattern
                return
        try:
            if plan.type == "soft":
                problem = self.inspector.soft_site_problem(process, address)
                if problem is not None:
                    raise DebuggerError(problem)
                process.add_user(address, state.id)
                process.armed[state.id] = [address]
            elif plan.type == "hardware":
                slot = next(s for s in range(self.backend.capabilities.hardware_breakpoints)
                            if s not in process.hw_slots)
                self.backend.set_hardware_breakpoint(process.pid, slot, address, plan.access, plan.size,
                                                     sample=state.sampled)
                process.hw_slots[slot] = state.id
                process.armed[state.id] = [slot]
            else:
                self.backend.set_memory_breakpoint(process.pid, address, plan.size, plan.access)
                process.guards[address] = (state.id, plan.size)
                process.armed[state.id] = [address]
            process.placed[state.id] = address
            state.ever_armed = True
        except (DebuggerError, EvaluationError) as e:
            # One bad address must not end the session nor be retried at every load.
            process.unarmable.add(state.id)
            where = f"{self.plan.recipe.file}:{plan.line}"
            self._warn_once(f"breakpoint {state.id} ({where}) not armed at {address:#x}: {e}")

    def code_address(self, process: ProcessState, state: BreakpointState, address: int) -> int | None:
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
                target = self.backend.call_function(process.pid, address)
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

    def disarm(self, process: ProcessState, state: BreakpointState, *, unmapped: bool = False) -> None:
        """Take a breakpoint out of `process`; `unmapped`: its memory is gone (the module
        was unloaded), so there is nothing to write back, and nothing may be."""
        where = process.armed.pop(state.id, None)
        process.placed.pop(state.id, None)
        if where is None:
            return
        if state.plan.type == "soft":
            process.drop_user(where[0], state.id, write=not unmapped)
        elif state.plan.type == "hardware":
            process.hw_slots.pop(where[0], None)
            if process.alive:
                self.backend.clear_hardware_breakpoint(process.pid, where[0])
        else:
            process.guards.pop(where[0], None)
            if process.alive:
                try:
                    self.backend.clear_memory_breakpoint(process.pid, where[0])
                except DebuggerError:
                    if not unmapped:
                        raise       # unmapped: the backend has forgotten the page all the same

    def forget_module(self, process: ProcessState, start: int, end: int) -> None:
        """An unloaded module took our int3s, guarded pages and pending returns in it
        along: forget them without writing (another library may be mapped there
        next), so its breakpoints arm again when it is loaded again."""
        inside = range(start, end)
        for bp_id in [b for b, address in process.placed.items() if address in inside]:
            self.disarm(process, self.breakpoints[bp_id], unmapped=True)
        for address in [a for a in process.sites if a in inside]:
            del process.sites[address]             # return sites of frames that were in it
        for address in [a for a in process.returns if a in inside]:
            del process.returns[address]
        process.retired = {a for a in process.retired if a not in inside}
        process.ifunc_targets = {r: t for r, t in process.ifunc_targets.items() if r not in inside}

    def arm_all(self, process: ProcessState) -> None:
        for bp_id in list(self.order):      # a copy: arming may drop a pattern's twin
            if bp_id in self.breakpoints:
                self.arm(process, self.breakpoints[bp_id])

    def _drop_twin(self, state: BreakpointState) -> None:
        """Forget a breakpoint a pattern added whose code another of its breakpoints has
        (memcpy and memmove resolved to one implementation): one record per call."""
        if not any(state.id in p.armed for p in self.processes.values()):
            del self.breakpoints[state.id]
            self.order.remove(state.id)

    # -- the loop -----------------------------------------------------------------
    def run_loop(self, timeout: float | None) -> None:
        deadline = None if timeout is None else self.start + timeout
        while self.processes or not self.started:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = self.backend.wait_event(remaining)
            if event is None:
                self.ended_how = "timeout"
                return
            pass_exception = False
            try:
                pass_exception = self.dispatch(event)
            except TargetLost:
                pass      # killed while we handled it: its exit (or RIP) event follows
            finally:
                info = event.info
                if (event.pid in self.processes or isinstance(info, ExceptionInfo)) and \
                        getattr(info, "registers", None) is None:       # a sampled hit stopped nothing
                    self._resume(event, pass_exception)
            interrupts.check()          # a SIGINT/SIGTERM that came while we were busy
            if self.end_request is not None:
                self.ended_how = {"stop": "stopped", "detach": "detached", "kill": "killed"}[self.end_request]
                return

    def report_sampled_hits(self) -> None:
        """The session ends: hits sampled and not reported yet happened while we were
        there, so they are reported before the target is let go; unless an action
        ended the session, whose record is then the last."""
        samples = self.backend.take_samples()
        if self.end_request is not None:
            return
        for event in samples:
            if event.pid in self.processes:
                self.dispatch(event)

    def _resume(self, event: DebugEvent, pass_exception: bool) -> None:
        try:
            self.backend.resume(event.tid, pass_exception=pass_exception)
        except DebuggerError:
            pass   # the thread is gone; its exit event will follow

    def dispatch(self, event: DebugEvent) -> bool:
        """Handle one event; return True to pass an exception on to the target."""
        code = event.code
        if code == _EXCEPTION_EVENT:          # first: breakpoint hits are nearly every event
            return self.on_exception(event)
        if code == EventCode.CREATE_PROCESS_DEBUG_EVENT:
            self.on_create_process(event)
        elif code == EventCode.LOAD_DLL_DEBUG_EVENT:
            self.on_load_dll(event)
        elif code == EventCode.UNLOAD_DLL_DEBUG_EVENT:
            self.on_unload_dll(event)
        elif code in (EventCode.EXIT_PROCESS_DEBUG_EVENT, EventCode.RIP_EVENT):
            self.on_exit_process(event)
        self.run_event_handlers(event)
        return False

    def on_create_process(self, event: DebugEvent) -> None:
        info: CreateProcessInfo = event.info  # type: ignore[assignment]
        if self.main_pid is None:
            self.main_pid = event.pid
        self.started = True
        modules = self.new_module_map()
        main = Module(info.image_path, info.image_base or 0)
        modules.add(main)
        self.expand_patterns(main, main=True)
        # An exec'd image (same pid) replaces everything: the old sites went with the old image.
        process = ProcessState(event.pid, self.backend, modules, image_path=info.image_path)
        parent = self.processes.get(info.parent_pid) if info.parent_pid is not None else None
        if parent is not None and event.pid not in self.processes:
            # A new fork child. The same pid again is an exec (in a followed child, its
            # parent_pid still names the parent): a fresh image, nothing to inherit.
            self.inherit_fork(parent, process)
        self.processes[event.pid] = process
        self.arm_all(process)

    def inherit_fork(self, parent: ProcessState, child: ProcessState) -> None:
        """A fork child's memory is a copy of its parent's, int3 bytes included:
        take over the parent's soft sites as they are instead of inserting again.
        Pending returns belong to the parent's threads, so their int3s go."""
        for address, site in parent.sites.items():
            copy = SoftSite(address, site.original, site.inserted, set(site.users) - {RETURN_USER}, site.code)
            if copy.users:
                child.sites[address] = copy
            elif copy.inserted:
                copy.remove(child.raw_write)
        child.armed = {bp_id: list(where) for bp_id, where in parent.armed.items()
                       if self.breakpoints[bp_id].plan.type == "soft"}
        # Debug registers are copied into the child by the backend; keep our slot map in step.
        for slot, bp_id in parent.hw_slots.items():
            child.hw_slots[slot] = bp_id
            child.armed[bp_id] = [slot]
        child.placed = {bp_id: parent.placed[bp_id] for bp_id in child.armed if bp_id in parent.placed}

    def patched_bytes(self, pid: int) -> dict[int, bytes]:
        """The original bytes under every int3 we have in `pid` now (see Backend.patched_bytes)."""
        process = self.processes.get(pid)
        if process is None:
            return {}
        return {a: s.original for a, s in process.sites.items() if s.inserted}

    def on_load_dll(self, event: DebugEvent) -> None:
        info: LoadDllInfo = event.info  # type: ignore[assignment]
        process = self.processes.get(event.pid)
        if process is None:
            return
        module = Module(info.path, info.base)
        process.modules.add(module)
        self.expand_patterns(module, main=False)
        self.arm_all(process)      # deferred breakpoints whose module or symbol just appeared

    def on_unload_dll(self, event: DebugEvent) -> None:
        info: UnloadDllInfo = event.info  # type: ignore[assignment]
        process = self.processes.get(event.pid)
        extent = process.modules.extent(info.base) if process is not None else None
        if process is None or extent is None:
            return
        process.modules.remove(info.base)
        self.forget_module(process, *extent)

    def on_exit_process(self, event: DebugEvent) -> None:
        process = self.processes.pop(event.pid, None)
        if process is not None:
            process.alive = False
        info = event.info
        if event.pid == self.main_pid and isinstance(info, ExitProcessInfo):
            self.exit_code, self.exit_signal = info.exit_code, info.signal
        elif event.pid == self.main_pid:
            self.ended_how = "lost"
            self.exit_signal = getattr(info, "signal", None)

    def run_event_handlers(self, event: DebugEvent, *, extra: dict[str, Any] | None = None,
                           regs: Any = None) -> None:
        handlers = self.plan.table.lookup(event)
        if not handlers and not self.all_events:
            return
        fields = event_fields(event)
        if extra:
            fields.update(extra)
        rec = self.record(fields["event"], int(event.code), event.pid, event.tid, **record_fields(fields))
        fields.update(code=int(event.code), pid=event.pid, tid=event.tid)
        process = self.processes.get(event.pid) or self._ghost(event.pid)
        self.run_actions([a for h in handlers for a in h.actions], process, event.tid, regs, rec, fields)
        self.emit(rec)

    def _ghost(self, pid: int) -> ProcessState:
        """A stand-in for a process that has already gone (its exit event's handlers)."""
        return ProcessState(pid, self.backend, self.new_module_map(), alive=False)

    def run_actions(self, actions: Any, process: ProcessState, tid: int, regs: Any,
                    rec: dict[str, Any], fields: dict[str, Any], hits: int = 0,
                    entry_args: tuple[int, ...] | None = None) -> StopContext:
        env = StopEnv(self, process, tid, regs, fields, hits, entry_args)
        ctx = StopContext(self, process, tid, env, rec)
        for action in actions:
            try:
                action.run(ctx)
            except (EvaluationError, DebuggerError, InstrumentError, OSError, ValueError) as e:
                message = e.message if isinstance(e, RecipeError) else str(e)
                rec.setdefault("errors", []).append(f"{action.kind}: {message}")
        return ctx
