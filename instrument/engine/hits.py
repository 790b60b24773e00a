"""Exception dispatch for a Session: breakpoint hits (soft, hardware, memory), returns, crashes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, MutableMapping

from ..errors import DebuggerError, EvaluationError
from ..events import DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from .breakpoints import BreakpointState, PendingReturn, SoftSite
from .context import StopContext, StopEnv
from ..arch.x86_64 import emulate
from .records import event_fields, record_fields

if TYPE_CHECKING:
    from .loop import ProcessState, Session

RETURN_USER = "\0return"      # the SoftSite user that stands for pending on_returns
IFUNC_USER = "\0resolver"     # ... for an indirect function's resolver we wait to see run
_EXCEPTION = int(EventCode.EXCEPTION_DEBUG_EVENT)     # a record's code, on every hit
MAX_SAVED_ARGS = 6


class HitHandling:
    """Mixed into Session: everything that happens on an EXCEPTION_DEBUG_EVENT."""

    def on_exception(self: Session, event: DebugEvent) -> bool:
        info: ExceptionInfo = event.info  # type: ignore[assignment]
        process = self.processes.get(event.pid)
        if process is None:
            return True
        if info.code == ExceptionCode.BREAKPOINT and not info.from_user:
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
                self.on_hardware_hit(process, event, ids)
            return False
        elif info.code == ExceptionCode.GUARD_PAGE:
            self.on_guard_hit(process, event)
            return False
        regs = self._regs(event.tid)
        self.run_event_handlers(event, regs=regs)
        if not info.first_chance:
            self.on_crash(process, event, regs)
        return True

    def _regs(self: Session, tid: int) -> MutableMapping[str, int] | None:
        try:
            return self.backend.registers(tid)
        except DebuggerError:
            return None

    # -- soft breakpoints --------------------------------------------------------
    def on_soft_hit(self: Session, process: ProcessState, event: DebugEvent, site: SoftSite) -> bool:
        tid, address = event.tid, site.address
        regs = self.backend.registers(tid)
        regs["rip"] = address            # the int3 ran; go back to the instruction it replaced
        for user in sorted(site.users, key=self._user_order):
            if user == RETURN_USER:
                self.on_return_hit(process, event, regs, address)
            elif user == IFUNC_USER:
                self.on_resolver_hit(process, event, regs, address)
            else:
                self.hit_breakpoint(process, event, self.breakpoints[user], regs, address)
        if regs["rip"] != address or process.sites.get(address) is not site or not site.inserted:
            return False                 # an action moved pc (return:), or the site is gone: nothing to step over
        return self.step_over(process, tid, site)

    def _user_order(self: Session, user: str) -> int:
        return self.order.index(user) if user in self.breakpoints else -1

    def step_over(self: Session, process: ProcessState, tid: int, site: SoftSite) -> bool:
        """Run the original instruction under the int3, then put the int3 back.

        Prologue instructions are emulated (arch/x86_64/prologue.py): no second stop,
        and the int3 never leaves memory. Everything else is single-stepped."""
        if site.code and emulate(site.code, self.backend.registers(tid), process.read, process.raw_write):
            return False
        self.backend.hold_others(tid)        # no sibling may run past the int3 while it is out
        site.remove(process.raw_write)
        try:
            stepped = self.backend.single_step(tid)
        finally:
            if process.alive and site.users and process.sites.get(site.address) is site:
                try:
                    site.insert(process.read, process.raw_write)
                except DebuggerError:
                    pass        # the process died during the step; its exit event follows
        info = stepped.info
        if isinstance(info, ExceptionInfo) and info.code == ExceptionCode.SINGLE_STEP and not info.hw_slots:
            return False
        # The instruction under the breakpoint did something else: a fault, a
        # hardware watchpoint, or the process went away. Handle that event here;
        # the caller's resume then continues this thread with its verdict.
        return self.dispatch(stepped) if stepped.code == EventCode.EXCEPTION_DEBUG_EVENT or stepped.pid in self.processes else False

    def hit_breakpoint(self: Session, process: ProcessState, event: DebugEvent, state: BreakpointState,
                       regs: MutableMapping[str, int], address: int, *, at: float | None = None,
                       **extra: Any) -> StopContext | None:
        if not state.active:
            return None
        plan = state.plan
        fields: dict[str, Any] = {"address": address, **extra}   # what expressions see: values
        if plan.when is not None:
            env = StopEnv(self, process, event.tid, regs, fields, state.hits)
            try:
                taken = bool(plan.when.evaluate(env))
            except EvaluationError as e:
                self._warn_once(f"breakpoint {state.id}: condition failed: {e}")
                taken = False
            if not taken:
                return None
        state.count_hit()
        rec = self.record("breakpoint", _EXCEPTION, event.pid, event.tid, at=at,
                          id=plan.id, type=plan.type, hits=state.hits, address=hex(address),
                          symbol=process.modules.symbol_text(address))
        if extra:
            rec.update(record_fields(extra))
        if plan.on_return is not None:
            self.push_return(process, event.tid, state, regs)
        ctx = self.run_actions(plan.actions, process, event.tid, regs, rec, fields, state.hits)
        self.emit(rec)
        if state.spent:
            for p in self.processes.values():
                try:
                    self.disarm(p, state)
                except DebuggerError:
                    pass      # its process is gone, its exit event not handled yet
        return ctx

    def _warn_once(self: Session, message: str) -> None:
        """A problem with the recipe met at run time: once into the summary's `errors`
        (SPEC 5 has no record of its own for it; the CLI repeats them on stderr)."""
        if message not in self.errors:
            self.errors.append(message)

    # -- on_return ------------------------------------------------------------
    def push_return(self: Session, process: ProcessState, tid: int, state: BreakpointState,
                    regs: MutableMapping[str, int]) -> None:
        rsp = regs["rsp"]
        self._drop_unwound_returns(process, tid, rsp, state.id)
        env = StopEnv(self, process, tid, regs, {})
        args = []
        for i in range(MAX_SAVED_ARGS):
            try:
                args.append(int(env.lookup(f"arg{i}")))
            except EvaluationError:
                break       # a stack-passed argument we cannot read: keep the ones before it
        self._expect_return(process, rsp, PendingReturn(state.id, tid, rsp + 8, tuple(args), state.hits))

    def on_resolver_hit(self: Session, process: ProcessState, event: DebugEvent,
                        regs: MutableMapping[str, int], resolver: int) -> None:
        """The loader runs an indirect function's resolver: catch what it returns."""
        rsp = regs["rsp"]
        self._expect_return(process, rsp, PendingReturn(IFUNC_USER, event.tid, rsp + 8, (resolver,), 0))

    def _expect_return(self: Session, process: ProcessState, rsp: int, pending: PendingReturn) -> None:
        """Wait for the call at function entry (return address at [rsp]) to return."""
        try:
            ret = int.from_bytes(process.read(rsp, 8), "little")
        except DebuggerError:
            return
        process.returns.setdefault(ret, []).append(pending)
        process.add_user(ret, RETURN_USER)

    def _drop_unwound_returns(self: Session, process: ProcessState, tid: int, rsp: int,
                              breakpoint_id: str) -> None:
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

    def on_return_hit(self: Session, process: ProcessState, event: DebugEvent,
                      regs: MutableMapping[str, int], address: int) -> None:
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
                    self.resolved_indirect(process, p.entry_args[0], target)
                    self.arm_all(process)          # the breakpoints that waited for it
                continue
            plan = self.breakpoints[p.breakpoint_id].plan
            rec = self.record("return", int(EventCode.EXCEPTION_DEBUG_EVENT), event.pid, event.tid,
                              id=p.breakpoint_id, type=plan.type, hits=p.entry_hits, address=hex(address),
                              symbol=process.modules.symbol_text(address), retval=hex(regs["rax"]))
            self.run_actions(plan.on_return or (), process, event.tid, regs, rec, {"address": address},
                             p.entry_hits, p.entry_args)
            self.emit(rec)
        if keep:
            process.returns[address] = keep
        else:
            process.returns.pop(address, None)
            process.drop_user(address, RETURN_USER)

    # -- hardware and memory breakpoints ------------------------------------------
    def on_hardware_hit(self: Session, process: ProcessState, event: DebugEvent, ids: list[str]) -> None:
        info: ExceptionInfo = event.info  # type: ignore[assignment]
        if info.registers is not None:          # sampled: the thread has run on (sampling.py)
            for bp_id in ids:
                # A hit queued before its slot went to another breakpoint is not that one's.
                if process.placed.get(bp_id) == info.address:
                    self.hit_breakpoint(process, event, self.breakpoints[bp_id], info.registers,  # type: ignore[arg-type]
                                        info.address, at=info.time)
            return
        regs = self.backend.registers(event.tid)
        for bp_id in ids:
            state = self.breakpoints[bp_id]
            if state.plan.access == "execute":
                self.hit_breakpoint(process, event, state, regs, info.address)
            else:
                watched = process.armed.get(bp_id)
                address = self.resolve(process, state) if watched else info.address
                self.hit_breakpoint(process, event, state, regs, address if address is not None else info.address,
                                    pc=info.address, access=state.plan.access)

    def on_guard_hit(self: Session, process: ProcessState, event: DebugEvent) -> None:
        info: ExceptionInfo = event.info  # type: ignore[assignment]
        fault = info.fault_address if info.fault_address is not None else info.address
        regs = self.backend.registers(event.tid)
        for start, (bp_id, size) in list(process.guards.items()):
            if start <= fault < start + size:
                self.hit_breakpoint(process, event, self.breakpoints[bp_id], regs, fault,
                                    pc=info.address, access=info.access.value if info.access else None)

    # -- crashes ----------------------------------------------------------------------
    def on_crash(self: Session, process: ProcessState, event: DebugEvent,
                 regs: MutableMapping[str, int] | None) -> None:
        self.crashed = True
        rec = self.record("crash", int(EventCode.EXCEPTION_DEBUG_EVENT), event.pid, event.tid)
        try:
            rec.update(self.inspector.crash_record(process, event.info, regs))
        except (DebuggerError, EvaluationError, OSError) as e:
            rec.setdefault("errors", []).append(f"crash analysis: {e}")
        if self.plan.crash is not None:
            fields = event_fields(event)
            fields.update({k: rec[k] for k in ("module", "symbol", "access") if rec.get(k) is not None})
            self.run_actions(self.plan.crash.actions, process, event.tid, regs, rec, fields)
        self.emit(rec)
