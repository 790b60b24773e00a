"""LinuxBackend: the Backend protocol over ptrace (PTRACE_SEIZE), for x86-64.

Threads and stops. Every traced thread is either running or in a ptrace-stop.
A stop is *held* while the engine owns an event for it (queued or reported);
`resume` continues a held thread only once no queued event names it, so a
burst (CREATE_PROCESS + LOAD_DLL, or several LOAD_DLLs) keeps it stopped
until the engine has seen all of it. Other stops (clone/exec parents,
PTRACE_INTERRUPT traps, group-stops, our own rendezvous int3) are internal:
they are handled here and the thread continues without the engine noticing.

All-stop stepping. `single_step` (and debug-register updates) first stops
every other running thread of the process with PTRACE_INTERRUPT and waits
for each stop, queueing any real event a thread reports instead, then steps,
then continues only the threads it interrupted. So no thread can run past a
breakpoint the engine removed to step over it. An interrupt that races with
another stop stays pending in the kernel (JOBCTL_TRAP_STOP) and shows up as a
stray PTRACE_EVENT_STOP later; those are internal and simply continued.

Group-stops (SIGSTOP/SIGTSTP delivered to the target) are kept: the thread is
resumed with PTRACE_LISTEN, so it stays stopped as it would without a
debugger, and SIGCONT wakes it with a PTRACE_EVENT_STOP that says SIGTRAP.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections import deque
from typing import Callable, Mapping, MutableMapping

from ...arch.x86_64 import DEBUG_SLOTS, Abi
from ...errors import DebuggerError, TargetError, TargetLost
from ...events import (
    CreateProcessInfo, CreateThreadInfo, DebugEvent, EventCode, ExceptionCode, ExceptionInfo,
    ExitProcessInfo, ExitThreadInfo, LoadDllInfo, RipInfo, UnloadDllInfo,
)
from ..base import Capabilities, Module, SpawnOptions
from . import _ffi, calls, debugregs, perfbp, procfs
from .launch import Expired, Launcher, WaitAlarm
from .rendezvous import Rendezvous, main_image_base
from .guard import GuardControl
from .state import Process, Thread, exception_for_signal, signal_name
from .stops import Events, Status

_SYSCALL_TRAP = signal.SIGTRAP | 0x80
_SIGTRAP, _SIGSEGV = int(signal.SIGTRAP), int(signal.SIGSEGV)   # plain ints: compared on every stop
_INT3_CODES = (_ffi.SI_KERNEL, _ffi.TRAP_BRKPT)
_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
# Forks are traced even when not followed: a fork child inherits our int3 on
# _dl_debug_state and would die of SIGTRAP at its first dlopen, so each child
# gets that byte back and is detached before it runs (see _on_fork).
_BASE_OPTIONS = (_ffi.PTRACE_O_TRACESYSGOOD | _ffi.PTRACE_O_TRACECLONE | _ffi.PTRACE_O_TRACEEXEC
                 | _ffi.PTRACE_O_TRACEFORK | _ffi.PTRACE_O_TRACEVFORK | _ffi.PTRACE_O_TRACEVFORKDONE)
_ESRCH = 3
# Sampled breakpoint hits (perfbp.py) waiting in the queue beyond which the target is
# stopped until the engine catches up: it can hit far faster than records are written.
_SAMPLE_BACKLOG = 10000
# s: how often a blocked wait looks at the rings. A ring holds some 40,000 hits, which
# takes a tight loop 10 ms or more even where a hit costs 0.25 µs (here about 10 µs).
_SAMPLE_TICK = 0.01
_COLLECT_EVERY = 64       # queued events handed out between two looks at the rings


def _breakpoint_hit(info: object) -> bool:
    """An int3 or debug-register trap: the engine's breakpoints, handled without stopping
    the other threads unless it steps over an int3 (hold_others). All-stop on every hit
    halves the hit rate of a multithreaded target."""
    return isinstance(info, ExceptionInfo) and (
        (info.code == ExceptionCode.BREAKPOINT and not info.from_user)
        or (info.code == ExceptionCode.SINGLE_STEP and bool(info.hw_slots)))


class LinuxBackend(GuardControl):
    """ptrace backend: spawn or attach, report events, step, read and write the target."""

    capabilities = Capabilities(
        os="linux", arch="x86_64", abi=Abi.SYSV, hardware_breakpoints=DEBUG_SLOTS,
        memory_breakpoints=True, follow_forks=True, attach=True,
        sampled_registers=perfbp.SAMPLED_REGISTERS,
    )

    def __init__(self) -> None:
        super().__init__()
        self._early: dict[int, int] = {}              # new tid -> its initial stop, seen before CLONE
        self._sampling = False       # some thread has a sampled breakpoint (perfbp.py)
        self._handed = 0             # events handed out, for looking at the rings now and then
        self._due: int | None = None  # sampled hits still to go before the queue's head
        self._alarm = WaitAlarm()
        self._launcher = Launcher(self._alarm.wake)
        self._closed = False
        self.patched_bytes: Callable[[int], Mapping[int, bytes]] | None = None

    # -- sessions ------------------------------------------------------------
    def spawn(self, options: SpawnOptions) -> int:
        pid, pump = self._launcher.start(options)
        flags = _BASE_OPTIONS | _ffi.PTRACE_O_EXITKILL
        try:
            self._launcher.seize_until_exec(pid, flags, options.argv[0])
        except TargetError:
            pump and pump.join(1.0)
            raise
        proc = self._add_process(pid, spawned=True, follow_forks=options.follow_forks)
        proc.pump = pump
        self._queue.extend(self._on_exec(proc, self._threads[pid]))
        return pid

    def attach(self, pid: int) -> int:
        if pid <= 0 or not procfs.is_alive(pid):
            raise TargetError(f"cannot attach to process {pid}: no such process")
        if pid in self._procs:
            raise TargetError(f"cannot attach to process {pid}: already traced by this session")
        proc = self._add_process(pid, spawned=False, follow_forks=False)
        try:
            self._seize_all(proc)
        except TargetError:
            self._forget(proc)
            raise
        self._queue.extend(self._attach_events(proc))
        # Signals that arrived while we interrupted the threads: reported after
        # the attach burst, and they keep their threads stopped until handled.
        while self._deferred:
            self._queue.extend(self._handle(*self._deferred.popleft()))
        return pid

    def detach(self, pid: int) -> None:
        proc = self._procs.get(pid)
        if proc is None:
            return
        self._close_sampler(proc)
        if proc.paused is not None:
            for th, sig in proc.paused:
                th.signal = sig or th.signal    # delivered by the detach
            proc.paused = None
            self._paused.discard(pid)
        with self._all_stopped(proc):
            self._release_guards(proc)
            proc.rdv.disarm(lambda a, d: self._write(proc, a, d))
            self._rewind_undelivered_breakpoints(proc)
            for th in list(proc.threads.values()):
                self._detach_thread(proc, th)
        self._drop_queued(pid)
        self._forget(proc)

    def _rewind_undelivered_breakpoints(self, proc: Process) -> None:
        """A thread that ran into an int3 the engine has since taken out (its event still
        in our queue: the session ended first) would resume one byte into the restored
        instruction. Put its pc back on the instruction, as gdb does for a "moribund"
        breakpoint; an int3 that is still there (the program's own) is left alone."""
        for ev in self._queue:
            info = ev.info
            if (ev.pid != proc.pid or not isinstance(info, ExceptionInfo)
                    or info.code != ExceptionCode.BREAKPOINT or info.from_user):
                continue
            try:
                if self.read_memory(proc.pid, info.address, 1) != b"\xcc":
                    self.registers(ev.tid)["rip"] = info.address
            except DebuggerError:
                continue

    def _detach_thread(self, proc: Process, th: Thread) -> None:
        # Deliver a pending real signal on the way out; never an int3's SIGTRAP,
        # which would kill a process nobody traces any more.
        sig = th.signal if th.signal not in (0, signal.SIGTRAP) else 0
        try:
            if proc.hw.active:
                debugregs.write(th.tid, debugregs.DR7, 0)
            self._flush(th)
            _ffi.ptrace(_ffi.PTRACE_DETACH, th.tid, None, sig)
        except _ffi.SyscallError as e:
            if e.errno != _ESRCH:
                raise

    def kill(self, pid: int) -> None:
        proc = self._procs.get(pid)
        if proc is None:
            return
        # The processes it started go too (as with timeout(1) or a terminal's Ctrl-C),
        # untraced fork children included: a --timeout in CI must leave nothing behind.
        # Found first: once the parent is dead they belong to init.
        for victim in [pid, *procfs.descendants(pid)]:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap(proc)
        self._drop_queued(pid)
        self._forget(proc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for proc in list(self._procs.values()):
            try:
                if proc.spawned:
                    self.kill(proc.pid)
                else:
                    self.detach(proc.pid)
            except Exception as e:  # keep closing the others; report the first
                errors.append(e)
                self._forget(proc)
        self._launcher.close()
        self._alarm.close()
        if errors:
            raise DebuggerError(f"closing the debug session: {errors[0]}")

    # -- the event loop ------------------------------------------------------
    def wait_event(self, timeout: float | None = None) -> DebugEvent | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._sampling or self._samples or self._paused:
                event = self._next_sample(deadline)
                if event is not None:
                    return event
                if self._samples and deadline is not None and time.monotonic() >= deadline:
                    return None          # the session's time is up, hits or not
            if not self._queue:
                self._collect_debug_strings()
            if self._queue:
                ev = self._queue.popleft()
                self._due = None        # the next event waits for the hits collected by then
                if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
                    if not _breakpoint_hit(ev.info):
                        self._freeze(ev.tid)    # faults, signals, guard pages: the process stands still
                    if ev.tid not in self._threads:   # its thread died since (SIGKILL)
                        proc = self._procs.get(ev.pid)
                        if proc is not None and proc.frozen:
                            self._thaw(proc)
                        continue
                return ev
            tick = None if not self._sampling else time.monotonic() + _SAMPLE_TICK
            status = self._next_status(deadline if tick is None or (deadline is not None and deadline < tick)
                                       else tick)
            if status is None:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue          # a tick: look at the rings
            self._queue_status(status)

    def _queue_status(self, status: Status) -> None:
        """Decode a status into the queue, after the hits sampled before it."""
        if self._sampling:
            self._collect_samples()     # (no pausing here: it would wait for this very stop)
        had = bool(self._queue)
        self._queue.extend(self._handle(*status))
        if self._queue and not had:
            self._due = len(self._samples)          # with those _handle added (exit, exec)
        self._continue_internal(status[0])

    # -- sampled hardware breakpoints (perfbp.py) ----------------------------------
    # Sampled hits wait in their own queue (`_samples`): none holds a thread, so none
    # may delay a resume, and they come in far faster than stops. A queued event goes
    # out after the hits collected before it (`_due` of them), not after later ones.
    def _next_sample(self, deadline: float | None) -> DebugEvent | None:
        """The next sampled hit to hand out, if one is due before the queued events;
        pauses and releases targets. A queued event waits for the hits collected up to
        when it is first looked at, not for hits that keep coming after it."""
        self._handed += 1
        if not self._samples or self._handed % _COLLECT_EVERY == 0:
            self._collect_samples()
            self._take_statuses()
            self._pace()
        if not self._samples or (deadline is not None and time.monotonic() >= deadline):
            return None
        if self._queue:
            if self._due is None:
                self._due = len(self._samples)
            if self._due == 0:
                return None            # the queue's head now
            self._due -= 1
        return self._samples.popleft()

    def _take_statuses(self) -> None:
        """Handle the stops that came in meanwhile, without waiting: while sampled hits
        keep the engine busy, the blocking wait is never reached, and a thread stopped
        for an event (a new thread, an exec, a soft breakpoint) would wait for good."""
        while True:
            if self._deferred:
                status = self._deferred.popleft()
            else:
                try:
                    status = os.waitpid(-1, _ffi.WALL | os.WNOHANG)
                except ChildProcessError:
                    return
                if not status[0]:
                    return
            self._queue_status(status)

    def _collect_samples(self) -> None:
        sampling = False
        for proc in self._procs.values():
            if proc.sampler.rings or proc.sampler.unread:
                self._samples.extend(self._sample_events(proc))
                sampling = sampling or bool(proc.sampler.rings)
        self._sampling = sampling

    def _sample_events(self, proc: Process) -> Events:
        samples = proc.sampler.take()
        if not samples:
            return []
        pid, code = proc.pid, EventCode.EXCEPTION_DEBUG_EVENT
        templates: dict[tuple[int, ...], ExceptionInfo] = {}     # one per set of slots
        events = []
        for s in samples:
            template = templates.get(s.slots)
            if template is None:
                template = templates[s.slots] = ExceptionInfo(
                    ExceptionCode.SINGLE_STEP, s.address, signal="SIGTRAP", si_code=_ffi.TRAP_HWBKPT,
                    hw_slots=s.slots)
            events.append(DebugEvent(code, pid, s.tid, template.sampled(s.registers, s.time)))
        return events

    def _pace(self) -> None:
        """Pause a process whose sampled hits pile up faster than the engine takes them
        (every thread stopped, and any continued meanwhile kept stopped: _cont), and let
        it go once half the backlog is gone: its rings then never fill."""
        backlog = len(self._samples)
        for proc in list(self._procs.values()):     # a thread may report the exit of all
            if backlog > _SAMPLE_BACKLOG and proc.paused is None and proc.sampler.rings:
                proc.paused = []
                self._paused.add(proc.pid)
                for th in self._interrupt_running(proc):
                    self._cont(th, 0)               # kept stopped: paused
            elif proc.paused is not None and (backlog <= _SAMPLE_BACKLOG // 2 or not proc.sampler.rings):
                self._release(proc)
        self._paused &= self._procs.keys()

    def take_samples(self) -> list[DebugEvent]:
        self._collect_samples()
        taken, self._samples = list(self._samples), deque()
        return taken

    def sampling_problems(self) -> list[str]:
        lost = self._sampling_lost + sum(p.sampler.lost for p in self._procs.values())
        problems = [f"hardware breakpoints stopped the target at every hit: {reason}"
                    for reason in sorted(self._sampling_refused)]
        if lost:
            problems.append(f"{lost} hits of sampled hardware breakpoints were lost: the target outran "
                            "instrument (--no-sampling stops the target at every hit instead)")
        return problems

    def _program(self, proc: Process, tid: int) -> None:
        """Set proc's hardware breakpoints in stopped thread `tid`: a perf event for
        each sampled one where perf allows, debug registers for the rest."""
        sampled = proc.sampler.apply(tid, {s: proc.hw.addresses[s] for s in proc.hw.sampled})
        proc.hw.apply(tid, without=sampled)
        self._sampling = self._sampling or bool(sampled)

    def _next_status(self, deadline: float | None) -> Status | None:
        if self._deferred:
            return self._deferred.popleft()
        if not self._procs:
            raise DebuggerError("no traced process to wait for")
        try:
            return self._alarm.waitpid(deadline)
        except Expired:
            return None if deadline is not None and time.monotonic() >= deadline else (0, -1)
        except ChildProcessError:
            # Our tracees vanished without an exit status (reaped or detached by someone else).
            for proc in list(self._procs.values()):
                self._queue.append(DebugEvent(EventCode.RIP_EVENT, proc.pid, proc.pid,
                                              RipInfo("the traced process vanished (ECHILD)")))
                self._forget(proc)
            return (0, -1)

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        th = self._threads.get(tid)
        if th is None or not th.held or (self._queue and any(e.tid == tid for e in self._queue)):
            return
        if pass_exception and self._second_chance(th):
            return
        self._cont(th, th.signal if pass_exception else 0)
        proc = self._procs.get(th.pid)
        if proc is not None and proc.frozen:
            self._thaw(proc)

    def hold_others(self, tid: int) -> None:
        self._freeze(tid)

    def _second_chance(self, th: Thread) -> bool:
        """A CPU trap the engine passes on (the program's own int3, its own single-step)
        that will kill the program, as SIGTRAP does without a handler: report it again
        as a last-chance exception first, as Windows does for an exception nobody
        handled, so the crash is recorded. The thread stays held for that event."""
        trap, th.trap = th.trap, None
        if trap is None or not procfs.signal_is_fatal(th.pid, th.tid, th.signal):
            return False
        last = dataclasses.replace(trap, first_chance=False)
        self._queue.appendleft(DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, th.pid, th.tid, last))
        return True

    def single_step(self, tid: int) -> DebugEvent:
        th = self._stopped_thread(tid)
        proc = self._procs[th.pid]
        with self._all_stopped(proc, keep=tid):
            while True:
                self._flush(th)
                th.stopped = th.held = False
                th.regs_valid = False
                try:
                    _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, tid, None, 0)
                    status = self._waitpid_tid(tid)
                except _ffi.SyscallError as e:
                    raise self._lost(proc, e) from None
                events = self._handle(tid, status)
                if th.guard is not None and th.tid in self._threads:
                    # The instruction touched a guarded page: complete it with the page
                    # open now, so the step makes progress (any GUARD_PAGE hit is returned).
                    events += self._step_past_guard(proc, th)
                    th.held = True
                if th.held or th.tid not in self._threads:
                    return self._step_result(th, events)
                self._queue.extend(events)   # an internal stop (clone, stray interrupt): step again

    def _step_result(self, th: Thread, events: Events) -> DebugEvent:
        for i, ev in enumerate(events):
            if ev.tid == th.tid and ev.code in (EventCode.EXCEPTION_DEBUG_EVENT,
                                                EventCode.EXIT_THREAD_DEBUG_EVENT,
                                                EventCode.EXIT_PROCESS_DEBUG_EVENT):
                self._queue.extend(events[:i] + events[i + 1:])
                return ev
        if th.tid not in self._threads:
            self._queue.extend(events[1:])
            return events[0] if events else DebugEvent(
                EventCode.RIP_EVENT, th.pid, th.tid, RipInfo(f"thread {th.tid} vanished while stepping"))
        self._queue.extend(events)
        rip = self._regs(th).rip
        return DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, th.pid, th.tid,
                          ExceptionInfo(ExceptionCode.SINGLE_STEP, rip, signal="SIGTRAP"))

    # -- state of a stopped thread -------------------------------------------
    def registers(self, tid: int) -> MutableMapping[str, int]:
        th = self._stopped_thread(tid)
        self._regs(th)
        return th.view

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        proc = self._proc(pid)
        return proc.rdv.mask(address, proc.read(address, size))

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        self._write(self._proc(pid), address, data)

    def call_function(self, pid: int, address: int, *args: int) -> int:
        proc = self._proc(pid)
        th = next((t for t in proc.threads.values() if t.held and t.stopped and t.guard is None), None)
        if th is None:
            raise DebuggerError(f"no thread of process {pid} is stopped to run a call in")
        with self._all_stopped(proc, keep=th.tid):
            try:
                return calls.call_function(th.tid, self._regs(th), lambda a, d: self._write(proc, a, d),
                                           self._waitpid_tid, address, args)
            finally:
                th.regs_valid = False       # restored by the call; read again when asked

    def threads(self, pid: int) -> list[int]:
        return sorted(self._proc(pid).threads)

    def modules(self, pid: int) -> list[Module]:
        proc = self._proc(pid)
        main = [Module(proc.image_path, proc.image_base or 0)]
        return main + [Module(path, base) for base, path in proc.rdv.known.items()]

    # -- hardware breakpoints --------------------------------------------------
    def set_hardware_breakpoint(self, pid: int, slot: int, address: int, access: str, size: int, *,
                                sample: bool = False) -> None:
        proc = self._proc(pid)
        proc.hw.set(slot, address, access, size, sampled=sample)
        self._apply_hw(proc)

    def clear_hardware_breakpoint(self, pid: int, slot: int) -> None:
        proc = self._procs.get(pid)
        if proc is None:
            return          # gone (its exit event not handled yet): nothing left to clear
        proc.hw.clear(slot)
        self._apply_hw(proc)

    def _apply_hw(self, proc: Process) -> None:
        with self._all_stopped(proc):
            for tid in proc.threads:
                self._program(proc, tid)

    # -- decoding: one function per waitpid status ------------------------------
    def _handle(self, tid: int, status: int) -> Events:
        """Decode one waitpid status into the events it produces. A thread left
        stopped and not `held` is in an internal stop: the caller continues it."""
        if tid == 0:
            return []          # a wake-up, not a status
        th = self._threads.get(tid)
        if th is None:
            if os.WIFSTOPPED(status):
                self._early[tid] = status  # a new thread's first stop, ahead of its CLONE event
            return []
        proc = self._procs[th.pid]
        if not os.WIFSTOPPED(status):
            return self._on_exit(proc, th, status)
        th.stopped, th.regs_valid, th.signal = True, False, 0
        sig, event = os.WSTOPSIG(status), status >> 16
        try:
            if not event and sig != _SYSCALL_TRAP:
                return self._on_signal(proc, th, sig)      # the common case: a signal (or trap)
            if event == _ffi.PTRACE_EVENT_STOP:
                # A group-stop names its stopping signal; an interrupt (ours) or the end
                # of a group-stop (SIGCONT) says SIGTRAP.
                th.group_stop = sig in _STOP_SIGNALS
                return []
            if sig == _SYSCALL_TRAP:
                return []
            if event in (_ffi.PTRACE_EVENT_CLONE, _ffi.PTRACE_EVENT_FORK, _ffi.PTRACE_EVENT_VFORK):
                # A vfork parent then waits in the kernel, deaf to PTRACE_INTERRUPT, until
                # its child execs or exits (VFORK_DONE): all-stop must not wait for it.
                th.in_vfork = event == _ffi.PTRACE_EVENT_VFORK
                return self._on_new_task(proc, th, event)
            if event == _ffi.PTRACE_EVENT_VFORK_DONE:
                th.in_vfork = False
                return []
            if event == _ffi.PTRACE_EVENT_EXEC:
                return self._on_exec(proc, th)
            return self._on_signal(proc, th, sig)
        except (_ffi.SyscallError, TargetLost) as e:
            if isinstance(e, TargetLost) or e.errno == _ESRCH:
                th.stopped = False  # killed while stopped (SIGKILL): its exit status follows
                return []
            raise

    def _on_signal(self, proc: Process, th: Thread, sig: int) -> Events:
        info = _ffi.get_siginfo(th.tid, th.siginfo)
        si_code, rip = info.si_code, self._regs(th).rip
        if sig == _SIGTRAP and si_code in _INT3_CODES and rip - 1 == proc.rdv.brk and proc.rdv.saved is not None:
            return self._on_rendezvous(proc, th)
        if sig == _SIGSEGV:
            guarded = self._on_guard_fault(proc, th, si_code, info.si_addr)
            if guarded is not None:
                return guarded
        hw_slots = self._debug_register_hits(proc, th, sig, si_code, rip)
        watched = None
        if hw_slots and proc.hw.watches:
            watched = next((proc.hw.addresses[s] for s in hw_slots if proc.hw.is_watch(s)), None)
        # Traps the CPU raised for us (int3, step, DR hits) are the debugger's, never fatal.
        ours = sig == _SIGTRAP and si_code > 0
        fatal = not ours and procfs.signal_is_fatal(proc.pid, th.tid, sig)
        exc = exception_for_signal(sig, si_code, info.si_addr, rip, not fatal, hw_slots, watched)
        th.signal, th.held = sig, True
        th.trap = exc if ours else None
        return [DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, proc.pid, th.tid, exc)]

    @staticmethod
    def _debug_register_hits(proc: Process, th: Thread, sig: int, si_code: int, rip: int) -> tuple[int, ...]:
        """The debug-register slots behind a SIGTRAP."""
        if sig != _SIGTRAP:
            return ()
        if si_code == _ffi.TRAP_HWBKPT:
            return debugregs.take_dr6(th.tid, proc.hw, rip)
        if si_code == _ffi.TRAP_TRACE and proc.hw.watches:
            # A single step whose instruction also hit a watchpoint: the kernel reports
            # the step (TRAP_TRACE wins over TRAP_HWBKPT); DR6 has the watch as well.
            return tuple(s for s in debugregs.take_dr6(th.tid) if proc.hw.is_watch(s))
        return ()

    def _on_rendezvous(self, proc: Process, th: Thread) -> Events:
        # _dl_debug_state is an empty function (a lone `ret`): emulate the ret
        # instead of stepping over our int3, which saves a full stop per change.
        regs = self._regs(th)
        regs.rip = int.from_bytes(proc.read(regs.rsp, 8), "little")
        regs.rsp += 8
        th.regs_dirty = True
        loaded, unloaded = proc.rdv.sync(proc.read)
        events = [DebugEvent(EventCode.UNLOAD_DLL_DEBUG_EVENT, proc.pid, th.tid, UnloadDllInfo(base, path))
                  for path, base in unloaded]
        events += [DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, proc.pid, th.tid, LoadDllInfo(path, base))
                   for path, base in loaded]
        th.held = bool(events)
        return events

    def _on_exec(self, proc: Process, th: Thread) -> Events:
        if th.tid != proc.pid:
            # A non-leader thread called execve: it now carries the leader's tid
            # and every other thread is gone without an exit report of its own.
            th = self._threads[proc.pid]
        for other in [t for t in proc.threads if t != proc.pid]:
            self._threads.pop(other, None)
            proc.threads.pop(other, None)
        th.stopped, th.held, th.regs_valid = True, True, False
        th.guard, proc.guards = None, None      # a new address space: no guarded pages
        proc.reopen_memory()
        aux = procfs.auxv(proc.pid)
        proc.image_path = procfs.exe(proc.pid)
        proc.image_base = main_image_base(proc.pid, proc.image_path, aux)
        proc.rdv = Rendezvous.locate(proc.pid, aux)
        events = [DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, proc.pid, th.tid,
                             CreateProcessInfo(proc.image_path, proc.image_base, proc.parent_pid))]
        if proc.rdv.loader_path is not None:
            proc.rdv.known[proc.rdv.loader_base] = proc.rdv.loader_path
            events.append(DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, proc.pid, th.tid,
                                     LoadDllInfo(proc.rdv.loader_path, proc.rdv.loader_base)))
        proc.rdv.arm(proc.read, lambda a, d: self._write(proc, a, d))
        if proc.hw.active:
            proc.hw = debugregs.HardwareSlots()   # exec clears the debug registers
        # Hits sampled in the old image come before its CREATE_PROCESS; its events go.
        self._close_sampler(proc)
        self._samples.extend(self._sample_events(proc))
        return events

    def _on_new_task(self, proc: Process, parent: Thread, event: int) -> Events:
        """A clone/fork/vfork stop of `parent` (internal: it continues); the new task is
        waited to its first stop, so it is held before it runs a single instruction."""
        new_tid = _ffi.get_event_msg(parent.tid)
        status = self._early.pop(new_tid, None)
        if status is None:
            status = self._waitpid_tid(new_tid)
        if not os.WIFSTOPPED(status):
            return []           # died before its first instruction
        if event == _ffi.PTRACE_EVENT_CLONE:
            th = self._add_thread(proc, new_tid)
            th.stopped = th.held = True
            if proc.hw.active:
                self._program(proc, new_tid)   # clone copies neither debug registers nor perf events
            return [DebugEvent(EventCode.CREATE_THREAD_DEBUG_EVENT, proc.pid, new_tid, CreateThreadInfo())]
        return self._on_fork(proc, new_tid, event == _ffi.PTRACE_EVENT_VFORK)

    def _on_fork(self, parent: Process, pid: int, vfork: bool) -> Events:
        if not parent.follow_forks:
            # Traced only so that our rendezvous int3 can be taken out of a fork
            # child before it runs; a vfork child shares the parent's memory, so
            # its bytes must stay as they are.
            try:
                if not vfork:
                    patches = dict(self.patched_bytes(parent.pid)) if self.patched_bytes else {}
                    if parent.rdv.brk is not None and parent.rdv.saved is not None:
                        patches[parent.rdv.brk] = parent.rdv.saved
                    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
                        for address, original in patches.items():
                            mem.seek(address)
                            mem.write(original)
                self._fork_guards(parent, pid, follow=False, vfork=vfork)
                _ffi.ptrace(_ffi.PTRACE_DETACH, pid, None, 0)
            except (OSError, DebuggerError):
                pass
            return []
        child = self._add_process(pid, spawned=parent.spawned, follow_forks=True)
        child.parent_pid = parent.pid
        child.image_path, child.image_base = parent.image_path, parent.image_base
        child.rdv = Rendezvous(pid, parent.rdv.loader_path, parent.rdv.loader_base, parent.rdv.brk,
                               parent.rdv.r_debug, parent.rdv.saved, dict(parent.rdv.known))
        child.hw = debugregs.HardwareSlots(list(parent.hw.addresses), parent.hw.dr7, parent.hw.sampled)
        child.guards = self._fork_guards(parent, pid, follow=True, vfork=vfork)
        th = child.threads[pid]
        th.stopped = th.held = True
        if child.hw.active:
            self._program(child, pid)
        events = [DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, pid, pid,
                             CreateProcessInfo(child.image_path, child.image_base, parent.pid))]
        events += [DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, pid, pid, LoadDllInfo(path, base))
                   for base, path in child.rdv.known.items()]
        return events

    def _on_exit(self, proc: Process, th: Thread, status: int) -> Events:
        self._threads.pop(th.tid, None)
        proc.threads.pop(th.tid, None)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        proc.sampler.drop(th.tid)
        self._samples.extend(self._sample_events(proc))    # handed out before its exit
        if th.tid != proc.pid:
            return [DebugEvent(EventCode.EXIT_THREAD_DEBUG_EVENT, proc.pid, th.tid, ExitThreadInfo(code))]
        # The leader's status comes last: the kernel delays it until every other
        # thread has been reaped. Drain stderr first so its lines come before the exit.
        events = self._drain_debug_strings(proc, final=True)
        sig = signal_name(os.WTERMSIG(status)) if os.WIFSIGNALED(status) else None
        if sig == "SIGKILL":
            # Our own kill() reaps without coming here, and SIGKILL cannot be
            # caught: the target was taken from under us (RIP_EVENT, SPEC 2).
            events.append(DebugEvent(EventCode.RIP_EVENT, proc.pid, th.tid,
                                     RipInfo("the target was killed by SIGKILL from outside", sig)))
        else:
            events.append(DebugEvent(EventCode.EXIT_PROCESS_DEBUG_EVENT, proc.pid, th.tid,
                                     ExitProcessInfo(code, sig)))
        self._forget(proc)
        return events

    # -- attach -------------------------------------------------------------
    def _seize_all(self, proc: Process) -> None:
        seized: set[int] = set()
        while True:
            fresh = [t for t in procfs.tasks(proc.pid) if t not in seized]
            if not fresh:
                break
            for tid in fresh:
                try:
                    _ffi.ptrace(_ffi.PTRACE_SEIZE, tid, None, _BASE_OPTIONS)
                    _ffi.ptrace(_ffi.PTRACE_INTERRUPT, tid, None, None)
                except _ffi.SyscallError as e:
                    if tid == proc.pid or e.errno != _ESRCH:
                        raise TargetError(f"cannot attach to process {proc.pid}: {e.strerror}") from None
                    continue  # the thread exited meanwhile
                seized.add(tid)
        for tid in sorted(seized):
            th = self._add_thread(proc, tid) if tid not in proc.threads else proc.threads[tid]
            status = self._waitpid_tid(tid)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._threads.pop(tid, None)
                proc.threads.pop(tid, None)
                continue
            th.stopped = True
            if status >> 16 != _ffi.PTRACE_EVENT_STOP:
                self._deferred.append((tid, status))
            else:
                th.group_stop = os.WSTOPSIG(status) in _STOP_SIGNALS     # attached to a stopped process
        if proc.pid not in proc.threads:
            raise TargetError(f"cannot attach to process {proc.pid}: it exited")

    def _attach_events(self, proc: Process) -> Events:
        aux = procfs.auxv(proc.pid)
        proc.image_path = procfs.exe(proc.pid)
        proc.image_base = main_image_base(proc.pid, proc.image_path, aux)
        proc.rdv = Rendezvous.locate(proc.pid, aux)
        loaded, _ = proc.rdv.sync(proc.read)
        if proc.rdv.loader_path and proc.rdv.loader_base not in proc.rdv.known:
            proc.rdv.known[proc.rdv.loader_base] = proc.rdv.loader_path
            loaded.insert(0, (proc.rdv.loader_path, proc.rdv.loader_base))
        proc.rdv.arm(proc.read, lambda a, d: self._write(proc, a, d))
        pid = proc.pid
        for th in proc.threads.values():
            th.held = True
        events = [DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, pid, pid,
                             CreateProcessInfo(proc.image_path, proc.image_base))]
        events += [DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, pid, pid, LoadDllInfo(path, base))
                   for path, base in loaded]
        events += [DebugEvent(EventCode.CREATE_THREAD_DEBUG_EVENT, pid, tid, CreateThreadInfo())
                   for tid in sorted(proc.threads) if tid != pid]
        return events
