"""EXCEPTION_DEBUG_EVENT dispatch: breakpoint hits (soft, hardware, memory), returns, crashes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, MutableMapping

from ..backend.base import Backend
from ..compiler.table import Handler
from ..errors import DebuggerError, EvaluationError
from ..events import DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from .arming import BreakpointSet
from .attribution import process_of, thread_of
from .breakpoints import Breakpoint, State
from ..arch.x86_64 import compile_emulation
from .handlers import Handlers
from .inspect import Inspector
from .process import ProcessState
from .records import Recorder, event_fields, record_fields
from .signals import SignalDispatch
from .sites import IFUNC_USER, NOT_DECODED, RETURN_USER, PendingReturn, SiteState, SoftSite
from .stop import Stop, StopEnv, condition_holds

if TYPE_CHECKING:
    from ..analysis.classify import Rule

_EXCEPTION = int(EventCode.EXCEPTION_DEBUG_EVENT)     # a record's code, on every hit
_IN = SiteState.IN
_SPENT = State.SPENT
MAX_SAVED_ARGS = 6
Regs = MutableMapping[str, int]


class ExceptionDispatch:
    """What happens on an EXCEPTION_DEBUG_EVENT, in the session's processes.

    `redispatch` is the session's whole dispatch, for the event a single-step over
    an int3 brings instead of the step (a fault, a watchpoint, the process gone)."""

    def __init__(self, backend: Backend, processes: dict[int, ProcessState], breakpoints: BreakpointSet,
                 handlers: Handlers, recorder: Recorder, inspector: Inspector, *, crash: Handler | None,
                 classify: bool, rules: tuple[Rule, ...], redispatch: Callable[[DebugEvent], bool]) -> None:
        self.backend, self.processes, self.breakpoints = backend, processes, breakpoints
        self.handlers, self.recorder, self.inspector = handlers, recorder, inspector
        self.crash, self.classify, self.rules = crash, classify, rules
        self.redispatch = redispatch
        self.host = handlers.host
        self.crashed = False
        self.signals = SignalDispatch(handlers.table.by_signal, self.host, recorder)
        # tid -> (address, rsp) of an int3 hit whose step-over a signal (or a fault)
        # interrupted before the instruction ran: when the thread comes back to that int3
        # at the same stack depth (the signal passed on and its handler returned, or
        # dropped), it is the same hit, stepped over again but not counted again. A handler
        # that longjmps away leaves its entry behind until replaced (a thread has one).
        self.rehits: dict[int, tuple[int, int]] = {}
        # Sampled hits that came after their breakpoint was spent or disabled (they were
        # in flight, in the rings, when it went), by breakpoint id: dropped, and counted.
        self.late: dict[str, int] = {}

    def on_exception(self, event: DebugEvent) -> bool:
        """Handle one exception; True: pass it on to the target."""
        info: ExceptionInfo = event.info  # type: ignore[assignment]
        process = self.processes.get(event.pid)
        if process is None:
            return True
        if info.code == ExceptionCode.BREAKPOINT and not info.from_user:
            if info.registers is not None:
                self.on_sampled_soft_hit(process, event, info)
                return False
            site = process.sites.get(info.address)
            if site is not None:
                return self.on_soft_hit(process, event, site)
            if process.retired_trap(info.address):
                # Run the instruction that is back in place of the int3, as if the
                # breakpoint had gone a moment sooner (gdb's "moribund" breakpoints).
                self.backend.registers(event.tid)["rip"] = info.address
                return False
        elif info.code == ExceptionCode.SINGLE_STEP and info.hw_slots:
            # Only we program debug registers: such a trap is never the program's. With no
            # breakpoint on its slot any more (spent or disabled while the trap of another
            # thread was queued) it is swallowed: an execute slot is clear now, and a
            # watch traps after the access.
            ids = [process.hw_slots[s] for s in info.hw_slots if s in process.hw_slots]
            if ids:
                self.on_hardware_hit(process, event, info, ids)
            return False
        elif info.code == ExceptionCode.GUARD_PAGE:
            self.on_guard_hit(process, event, info)
            return False
        regs = self._regs(event.tid)
        verdict = self.signals.on_signal(process, event, info, regs) if self.signals.by_signal else None
        self.handlers.run_event_handlers(event, regs=regs)
        if verdict is False:
            return False        # suppressed: the program never gets it, so it cannot die of it
        if not info.first_chance:
            self.on_crash(process, event, info, regs)
        return True

    def _regs(self, tid: int) -> Regs | None:
        try:
            return self.backend.registers(tid)
        except DebuggerError:
            return None

    # -- soft breakpoints --------------------------------------------------------
    def on_soft_hit(self, process: ProcessState, event: DebugEvent, site: SoftSite) -> bool:
        tid, address = event.tid, site.address
        regs = self.backend.registers(tid)
        regs["rip"] = address            # the int3 ran; go back to the instruction it replaced
        users = site.users      # a copy to walk: a hit may take its breakpoint out of the site
        by_id = self.breakpoints.by_id
        if self.rehits and self.rehits.get(tid) == (address, regs["rsp"]):
            del self.rehits[tid]
            users = set()                # that hit has been counted: only the step over is left
        for user in (tuple(users) if len(users) == 1 else sorted(users, key=self.breakpoints.rank)):
            if user == RETURN_USER:
                self.on_return_hit(process, event, regs, address)
            elif user == IFUNC_USER:
                self.on_resolver_hit(process, event, regs, address)
            else:
                self.hit_breakpoint(process, event, by_id[user], regs, address)
        if regs["rip"] != address or process.sites.get(address) is not site or site.state is not _IN:
            return False                 # an action moved pc (return:), or the site is gone: nothing to step over
        return self.step_over(process, tid, site)

    def on_sampled_soft_hit(self, process: ProcessState, event: DebugEvent, info: ExceptionInfo) -> None:
        """A uprobe's hit (Backend.sample_code): the thread has run on, so as for a
        sampled hardware hit nothing may read its memory or change it."""
        address = info.address
        users = process.sampled.get(address)
        if users is None:
            # Its sampled breakpoints went, or became users of an int3 there since.
            site = process.sites.get(address)
            users = site.users if site is not None else set()
        gone = process.unsampled.get(address)
        sampled: Regs = info.registers      # type: ignore[assignment]  # read-only: nothing writes a sample
        by_id = self.breakpoints.by_id
        if len(users) == 1 and not gone:
            (user,) = users                 # nearly always: one breakpoint there
            order: tuple[str, ...] | list[str] = (user,)
        else:
            # A copy to walk: a hit may take its breakpoint out (its limit).
            order = sorted(users | gone if gone else users, key=self.breakpoints.rank)
        for user in order:
            bp = by_id.get(user)
            if bp is None or not bp.sampled:
                continue                  # a return site, a resolver, a stopping breakpoint
            if process.placed.get(user) != address or not bp.active:
                self.late[user] = self.late.get(user, 0) + 1
                continue
            self.hit_breakpoint(process, event, bp, sampled, address, at=info.time)

    def late_hits(self) -> list[str]:
        """For the summary: the sampled hits dropped because they came too late."""
        return [f"{n} hit{'s' if n > 1 else ''} of sampled breakpoint {bp_id} were dropped: in flight "
                "when it reached its limit or was disabled" for bp_id, n in sorted(self.late.items())]

    def step_over(self, process: ProcessState, tid: int, site: SoftSite) -> bool:
        """Run the original instruction under the int3, then put the int3 back.

        Prologue instructions are emulated (arch/x86_64/prologue.py), decoded once per
        site: no second stop, and the int3 never leaves memory. Everything else is
        single-stepped, the site RUNNING meanwhile."""
        emulation = site.emulation
        if emulation is NOT_DECODED:
            emulation = site.emulation = compile_emulation(site.code) if site.code else None
        if emulation is not None:          # (rip is at the site: on_soft_hit put it back)
            emulation(self.backend.registers(tid), site.address, process.read, process.raw_write)
            return False
        self.backend.hold_others(tid)        # no sibling may run past the int3 while it is out
        site.step_out(process.raw_write)
        try:
            stepped = self.backend.single_step(tid)
        finally:
            try:
                site.step_back(process.raw_write, keep=process.alive and bool(site.users)
                               and process.sites.get(site.address) is site)
            except DebuggerError:
                pass        # the process died during the step; its exit event follows
        info = stepped.info
        if isinstance(info, ExceptionInfo) and info.code == ExceptionCode.SINGLE_STEP and not info.hw_slots:
            return False
        # The instruction under the breakpoint did something else: a fault, a
        # hardware watchpoint, or the process went away; or a signal came first. Handle
        # that event here; the caller's resume then continues this thread with its verdict.
        if stepped.code == EventCode.EXCEPTION_DEBUG_EVENT and process.alive:
            try:
                regs = self.backend.registers(tid)
                if regs["rip"] == site.address:      # not run: the thread comes back to this int3
                    self.rehits[tid] = (site.address, regs["rsp"])
            except DebuggerError:
                pass
        if stepped.code == EventCode.EXCEPTION_DEBUG_EVENT or stepped.pid in self.processes:
            return self.redispatch(stepped)
        return False

    def hit_breakpoint(self, process: ProcessState, event: DebugEvent, bp: Breakpoint, regs: Regs,
                       address: int, *, at: float | None = None, **extra: Any) -> Stop | None:
        if not bp.active:
            return None
        plan = bp.plan
        fields: dict[str, Any] = {"address": address, **extra} if extra else {"address": address}  # values
        env = StopEnv(self.host, process, event.tid, regs, fields, bp.hits)
        if plan.when is not None and not condition_holds(plan.when, env, self.recorder.warn_once,
                                                         f"breakpoint {bp.id}: condition failed"):
            return None
        bp.hit()
        env.hits = bp.hits
        rec = self.recorder.hit_record(event.pid, event.tid, at, plan.id, plan.type, bp.hits, address,
                                       process.modules.symbol_text(address))
        if extra:
            rec.update(record_fields(extra))
        if plan.on_return is not None:
            self.push_return(process, event.tid, bp, regs)
        stop = Stop(env, rec).run(plan.actions)
        self.recorder.emit(rec)
        if bp.state is _SPENT:
            self.breakpoints.spent(bp)
        return stop

    # -- on_return ------------------------------------------------------------
    def push_return(self, process: ProcessState, tid: int, bp: Breakpoint, regs: Regs) -> None:
        rsp = regs["rsp"]
        self._drop_unwound_returns(process, tid, rsp, bp.id)
        env = StopEnv(self.host, process, tid, regs, {})
        args = []
        for i in range(MAX_SAVED_ARGS):
            try:
                args.append(int(env.lookup(f"arg{i}")))
            except EvaluationError:
                break       # a stack-passed argument we cannot read: keep the ones before it
        self._expect_return(process, rsp, PendingReturn(bp.id, tid, rsp + 8, tuple(args), bp.hits))

    def on_resolver_hit(self, process: ProcessState, event: DebugEvent, regs: Regs, resolver: int) -> None:
        """The loader runs an indirect function's resolver: catch what it returns."""
        rsp = regs["rsp"]
        self._expect_return(process, rsp, PendingReturn(IFUNC_USER, event.tid, rsp + 8, (resolver,), 0))

    def _expect_return(self, process: ProcessState, rsp: int, pending: PendingReturn) -> None:
        """Wait for the call at function entry (return address at [rsp]) to return."""
        try:
            ret = int.from_bytes(process.read(rsp, 8), "little")
        except DebuggerError:
            return
        process.returns.setdefault(ret, []).append(pending)
        process.add_user(ret, RETURN_USER)

    def _drop_unwound_returns(self, process: ProcessState, tid: int, rsp: int, breakpoint_id: str) -> None:
        """A call entered with its return slot at `rsp`: frames of this thread whose
        return slot is at or below it were unwound without returning (longjmp, a C++
        exception) and never will return; forget them, or the next return at that
        depth would be reported for them too."""
        for address, pending in list(process.returns.items()):
            # Below rsp: gone. At rsp itself: the same breakpoint entered again at that
            # depth, so its earlier call there never returned (other breakpoints on this
            # call share the slot and are alive).
            alive = [p for p in pending if p.tid != tid or p.expected_rsp - 8 > rsp
                     or (p.expected_rsp - 8 == rsp and p.breakpoint_id != breakpoint_id)]
            if len(alive) == len(pending):
                continue
            if alive:
                process.returns[address] = alive
            else:
                del process.returns[address]
                process.drop_user(address, RETURN_USER)

    def on_return_hit(self, process: ProcessState, event: DebugEvent, regs: Regs, address: int) -> None:
        pending = process.returns.get(address, [])
        rsp = regs["rsp"]
        matched = [p for p in pending if p.tid == event.tid and p.expected_rsp == rsp]
        # Frames of this thread below the current stack pointer are gone (longjmp,
        # exceptions): they will never return here, so forget them too.
        stale = [p for p in pending if p.tid == event.tid and p.expected_rsp < rsp]
        keep = [p for p in pending if p not in matched and p not in stale]
        for p in matched:
            if p.breakpoint_id == IFUNC_USER:
                target = regs["rax"]
                if process.modules.find(target) is not None:
                    self.breakpoints.resolved_indirect(process, p.entry_args[0], target)
                    self.breakpoints.arm_all(process)          # the breakpoints that waited for it
                continue
            plan = self.breakpoints[p.breakpoint_id].plan
            rec = self.recorder.record("return", _EXCEPTION, event.pid, event.tid,
                                       id=p.breakpoint_id, type=plan.type, hits=p.entry_hits, address=hex(address),
                                       symbol=process.modules.symbol_text(address), retval=hex(regs["rax"]))
            self.handlers.run_actions(plan.on_return or (), process, event.tid, regs, rec, {"address": address},
                                      p.entry_hits, p.entry_args)
            self.recorder.emit(rec)
        if keep:
            process.returns[address] = keep
        else:
            process.returns.pop(address, None)
            process.drop_user(address, RETURN_USER)

    # -- hardware and memory breakpoints ------------------------------------------
    def on_hardware_hit(self, process: ProcessState, event: DebugEvent, info: ExceptionInfo,
                        ids: list[str]) -> None:
        if info.registers is not None:          # sampled: the thread has run on (compiler/sampling.py)
            sampled: Regs = info.registers      # type: ignore[assignment]  # read-only: nothing writes a sample
            for bp_id in ids:
                # A hit queued before its slot went to another breakpoint is not that one's.
                if process.placed.get(bp_id) == info.address:
                    self.hit_breakpoint(process, event, self.breakpoints.by_id[bp_id], sampled, info.address, at=info.time)
            return
        regs = self.backend.registers(event.tid)
        by_id = self.breakpoints.by_id
        for bp_id in ids:
            bp = by_id[bp_id]
            if bp.executes:
                self.hit_breakpoint(process, event, bp, regs, info.address)
            else:
                watched = process.armed.get(bp_id)
                address = self.breakpoints.resolve(process, bp) if watched is not None else info.address
                self.hit_breakpoint(process, event, bp, regs, address if address is not None else info.address,
                                    pc=info.address, access=bp.plan.access)

    def on_guard_hit(self, process: ProcessState, event: DebugEvent, info: ExceptionInfo) -> None:
        fault = info.fault_address if info.fault_address is not None else info.address
        regs = self.backend.registers(event.tid)
        for start, (bp_id, size) in list(process.guards.items()):
            if start <= fault < start + size:
                self.hit_breakpoint(process, event, self.breakpoints[bp_id], regs, fault,
                                    pc=info.address, access=info.access.value if info.access else None)

    # -- crashes ----------------------------------------------------------------------
    def on_crash(self, process: ProcessState, event: DebugEvent, info: ExceptionInfo, regs: Regs | None) -> None:
        self.crashed = True
        rec = self.recorder.record("crash", _EXCEPTION, event.pid, event.tid)
        try:
            rec.update(self.inspector.crash_record(process, info, regs))
            if info.si_code is not None:
                # Who raised it (> 0 the kernel, <= 0 a process), also where nothing was
                # classified; never the sender's pid, which differs run to run.
                rec.setdefault("si_code", info.si_code)
            rec["thread"] = thread_of(process, event.tid, rec.get("frames") or [])
            rec["process"] = process_of(process)
            if self.classify and regs is not None:     # SPEC 5: classification and hash
                # Imported at the first crash, for start-up speed: most sessions have none.
                from ..analysis.classify import annotate, load_rules
                annotate(rec, load_rules(first=self.rules) if self.rules else None)
        except (DebuggerError, EvaluationError, OSError) as e:
            rec.setdefault("errors", []).append(f"crash analysis: {e}")
        if self.crash is not None:
            fields = event_fields(event)
            fields.update({k: rec[k] for k in ("module", "symbol", "access") if rec.get(k) is not None})
            self.handlers.run_actions(self.crash.actions, process, event.tid, regs, rec, fields)
        self.recorder.emit(rec)
