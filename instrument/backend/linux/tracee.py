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
from typing import Callable, Mapping, MutableMapping

from ... import interrupts
from ...arch.x86_64 import DEBUG_SLOTS, Abi
from ...errors import DebuggerError, TargetError
from ...events import DebugEvent, EventCode, ExceptionCode, ExceptionInfo, RipInfo
from ..base import Capabilities, Module, SpawnOptions
from . import _ffi, attach, debugregs, perfbp, procfs
from .calls import Injector
from .decode import Decoder, _unpin
from .guard import SEGV_ACCERR, Guards
from .callbufs import guard_call_numbers
from .launch import Expired, Launcher, WaitAlarm
from .sampling import SAMPLE_TICK, Sampling
from .state import IN_A_STOP, STOPPED, THE_ENGINES, Process, Thread
from .stops import Events, Status, Tracees

# Forks are traced even when not followed: a fork child inherits our int3 on
# _dl_debug_state and would die of SIGTRAP at its first dlopen, so each child
# gets that byte back and is detached before it runs (decode.py, _on_fork).
_BASE_OPTIONS = (_ffi.PTRACE_O_TRACESYSGOOD | _ffi.PTRACE_O_TRACECLONE | _ffi.PTRACE_O_TRACEEXEC
                 | _ffi.PTRACE_O_TRACEFORK | _ffi.PTRACE_O_TRACEVFORK | _ffi.PTRACE_O_TRACEVFORKDONE)
_ESRCH = 3
_EXCEPTION = EventCode.EXCEPTION_DEBUG_EVENT


def _breakpoint_hit(info: object) -> bool:
    """An int3 or debug-register trap: the engine's breakpoints, handled without stopping
    the other threads unless it steps over an int3 (hold_others). All-stop on every hit
    halves the hit rate of a multithreaded target."""
    return isinstance(info, ExceptionInfo) and (
        (info.code == ExceptionCode.BREAKPOINT and not info.from_user)
        or (info.code == ExceptionCode.SINGLE_STEP and bool(info.hw_slots)))


_TRAP_BIT = 1 << (signal.SIGTRAP - 1)
# si_code of the stop a single step into a signal handler ends in (ptrace_notify(SIGTRAP)).
_HANDLER_ENTERED = int(signal.SIGTRAP)


class LinuxBackend:
    """ptrace backend: spawn or attach, report events, step, read and write the target.

    A facade over its parts, each over the one registry of tracees (stops.py):
    the stop decoder (decode.py), guard pages (guard.py), injected code
    (calls.py) and sampled breakpoints (sampling.py)."""

    capabilities = Capabilities(
        os="linux", arch="x86_64", abi=Abi.SYSV, hardware_breakpoints=DEBUG_SLOTS,
        memory_breakpoints=True, follow_forks=True, attach=True,
        sampled_registers=perfbp.SAMPLED_REGISTERS, sampled_soft=True, syscalls=True, syscall_filter=True,
        signals=True,
    )

    def __init__(self) -> None:
        t = self._t = Tracees()
        self._inject = Injector(t)
        self._guards = Guards(t, self._inject)
        self._sampling = Sampling(t, self._take_statuses)
        self._decoder = Decoder(t, self._guards, self._sampling, self._patches)
        t.decode = self._decoder.handle
        t.step_guarded = self._guards.step_guarded
        # Read on every stop: the registry's containers (never rebound) and the decoder.
        self._procs, self._threads, self._queue, self._deferred = t.procs, t.threads, t.queue, t.deferred
        self._handle = self._decoder.handle
        self._stopped_thread, self._regs = t.stopped_thread, t.regs
        self._alarm = WaitAlarm()
        self._alarm.taken = t.deferred      # a status a signal's raise cut short is handled first
        t.wait_tick = self._wait_tick
        self._launcher = Launcher(self._alarm.wake, self._alarm.watch_io)
        self._closed = False
        self.patched_bytes: Callable[[int], Mapping[int, bytes]] | None = None

    def _patches(self, pid: int) -> Mapping[int, bytes]:
        return self.patched_bytes(pid) if self.patched_bytes else {}

    # -- sessions ------------------------------------------------------------
    def spawn(self, options: SpawnOptions) -> int:
        launch = options
        if options.guard_filter:
            # The filter also stops the calls a guarded page can fail (guardcalls.py).
            named = options.syscalls if options.syscall_filter and options.syscalls else frozenset()
            launch = dataclasses.replace(options, syscalls=named | guard_call_numbers(), syscall_filter=True)
        pid, pump = self._launcher.start(launch)
        flags = _BASE_OPTIONS | _ffi.PTRACE_O_EXITKILL
        filtered = options.syscall_filter and bool(options.syscalls)
        if filtered or options.guard_filter:
            flags |= _ffi.PTRACE_O_TRACESECCOMP      # else the filter's TRACE fails calls with ENOSYS
        try:
            self._launcher.seize_until_exec(pid, flags, options.argv[0])
        except TargetError:
            if pump is not None:
                pump.join(1.0)
            raise
        proc = self._t.add_process(pid, spawned=True, follow_forks=options.follow_forks)
        proc.pump = pump
        proc.guard_filter = options.guard_filter
        proc.debug_before = debugregs.snapshot(pid)
        if options.pin_cpu:
            proc.unpin_to = self._launcher.saved_affinity
        if options.syscalls:
            self._decoder.syscalls.trace(proc, options.syscalls, options.syscall_exits, filtered=filtered)
        self._queue.extend(self._decoder.on_exec(proc, self._threads[pid]))
        return pid

    def attach(self, pid: int) -> int:
        if pid <= 0 or not procfs.is_alive(pid):
            raise TargetError(f"cannot attach to process {pid}: no such process")
        if pid in self._procs:
            raise TargetError(f"cannot attach to process {pid}: already traced by this session")
        t = self._t
        proc = t.add_process(pid, spawned=False, follow_forks=False)
        try:
            attach.seize_all(t, proc, _BASE_OPTIONS)
        except TargetError:
            t.forget(proc)
            raise
        proc.debug_before = next((debugregs.snapshot(th.tid) for th in proc.threads.values() if th.stopped), None)
        self._queue.extend(attach.attach_events(proc))
        # Signals that arrived while we interrupted the threads: reported after
        # the attach burst, and they keep their threads stopped until handled.
        while t.deferred:
            self._queue.extend(self._decoder.handle(*t.deferred.popleft()))
        return pid

    def detach(self, pid: int) -> None:
        t = self._t
        proc = self._procs.get(pid)
        if proc is None:
            return
        t.close_sampler(proc)
        # Its uprobes gone before DR6 is put back: until then their int3s stay and every
        # hit, single-stepped out of line by the kernel, sets DR6.BS again. The target
        # runs meanwhile (its hits are no longer counted: the session has ended for it).
        t.probes.settle()
        if proc.paused is not None:
            for th, sig in proc.paused:
                th.signal = sig or th.signal    # delivered by the detach
            proc.paused = None
            t.paused.discard(pid)
        with t.all_stopped(proc):
            self._guards.release(proc)
            proc.rdv.disarm(proc.write)
            for th in list(proc.threads.values()):
                self._drain_our_traps(proc, th)
            self._rewind_undelivered_breakpoints(proc)
            for th in list(proc.threads.values()):
                self._detach_thread(proc, th)
        t.drop_queued(pid)
        t.forget(proc)

    def _drain_our_traps(self, proc: Process, th: Thread) -> None:
        """Take the CPU traps (int3, debug-register hits, steps) and guard-page faults
        still queued for a thread we are about to let go. A thread that trapped or
        faulted just as our PTRACE_INTERRUPT came reports the interrupt first (the kernel
        runs the job-control trap before it dequeues a signal) with the SIGTRAP or
        SIGSEGV still pending: detached like that, it would die of it. Continued, it
        dequeues that signal before any instruction of its own and stops for it; the stop
        is decoded as any other: an int3's is then rewound, a fault on a page given back
        (guard.py, a stale fault) runs its instruction again, a real fault stays."""
        guarded = proc.guards is not None
        for _ in range(8):          # one per queued trap, and a stray interrupt stop or two
            if th.tid not in self._threads or not th.stopped or th.group_stop or th.guard is not None:
                return
            try:
                if not any((i.si_signo == signal.SIGTRAP and i.si_code > 0)
                           or (guarded and i.si_signo == signal.SIGSEGV and i.si_code == SEGV_ACCERR)
                           for i in _ffi.pending_signals(th.tid)):
                    return
                # A real signal it stopped for is delivered first (its handler frame set up).
                _ffi.cont(th.tid, th.signal if th.signal != signal.SIGTRAP else 0)
            except _ffi.SyscallError:
                return          # gone (ESRCH), or nothing to learn: detach as it is
            th.ran()
            self._queue.extend(self._t.decode(th.tid, self._t.waitpid_tid(th.tid)))

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
            if proc.debug_before is not None:
                debugregs.restore(th.tid, proc.debug_before)
            self._t.flush(th)
            if th.owed is not None:
                # A sent SIGTRAP not handed on yet (decode.py's merged trap): it goes with
                # the detach, as its sender sent it.
                _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, th.tid, None, th.owed)
                sig, th.owed = signal.SIGTRAP, None
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
        self._t.reap(proc)
        self._t.drop_queued(pid)
        self._t.forget(proc)

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
                self._t.forget(proc)
        self._t.probes.close()          # every uprobe gone, in every process
        self._launcher.close()
        self._alarm.close()
        if errors:
            raise DebuggerError(f"closing the debug session: {errors[0]}")

    # -- the event loop ------------------------------------------------------
    def wait_event(self, timeout: float | None = None) -> DebugEvent | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        t, sampling, queue = self._t, self._sampling, self._queue
        while True:
            if sampling.active or sampling.samples or t.paused:
                event = sampling.next(deadline)
                if event is not None:
                    return event
                if sampling.samples and deadline is not None and time.monotonic() >= deadline:
                    return None          # the session's time is up, hits or not
            if not queue:
                t.collect_debug_strings()
            if queue:
                ev = queue.popleft()
                sampling.due = None     # the next event waits for the hits collected by then
                if ev.code == _EXCEPTION:
                    if not _breakpoint_hit(ev.info):
                        t.freeze(ev.tid)    # faults, signals, guard pages: the process stands still
                    if ev.tid not in self._threads:   # its thread died since (SIGKILL)
                        proc = self._procs.get(ev.pid)
                        if proc is not None and proc.frozen:
                            t.thaw(proc)
                        continue
                return ev
            tick = None if not sampling.active else time.monotonic() + SAMPLE_TICK
            status = self._next_status(deadline if tick is None or (deadline is not None and deadline < tick)
                                       else tick)
            if status is None:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue          # a tick: look at the rings
            self._queue_status(status)

    def _queue_status(self, status: Status) -> None:
        """Decode a status into the queue, after the hits sampled before it."""
        if self._sampling.active:
            self._sampling.collect()     # (no pausing here: it would wait for this very stop)
        queue = self._queue
        had = bool(queue)
        queue.extend(self._handle(*status))
        if queue and not had:
            self._sampling.due = len(self._sampling.samples)   # with those decoding added (exit, exec)
        th = self._threads.get(status[0])
        if th is not None and th.state is STOPPED:     # (Tracees.continue_internal, inline: every stop)
            self._t.cont(th, 0)

    def _wait_tick(self, seconds: float) -> Status | None:
        """All-stop's wait (stops.py): any child's status within `seconds`, or None. SIGINT
        and SIGTERM are answered while it blocks: kept pending for the engine's next safe
        point, and the wait returns (all-stop passes by a thread that will not stop)."""
        if interrupts.state.pending is None:
            try:
                return self._alarm.waitpid(time.monotonic() + seconds)
            except Expired:
                return None
            except interrupts.Interrupted as e:
                interrupts.state.pending = e.signum
                return None
        deadline = time.monotonic() + seconds
        while True:
            got = os.waitpid(-1, _ffi.WALL | os.WNOHANG)
            if got[0] or time.monotonic() >= deadline:
                return got if got[0] else None
            time.sleep(0.002)

    def _take_statuses(self) -> None:
        """Handle the stops that came in meanwhile, without waiting: while sampled hits
        keep the engine busy, the blocking wait is never reached, and a thread stopped
        for an event (a new thread, an exec, a soft breakpoint) would wait for good."""
        deferred = self._deferred
        while True:
            if deferred:
                status = deferred.popleft()
            else:
                try:
                    status = os.waitpid(-1, _ffi.WALL | os.WNOHANG)
                except ChildProcessError:
                    return
                if not status[0]:
                    return
            self._queue_status(status)

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
                self._t.forget(proc)
            return (0, -1)

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        th = self._threads.get(tid)
        # (th.held without a call: asked on every stop)
        if th is None or th.state not in THE_ENGINES or (self._queue and any(e.tid == tid for e in self._queue)):
            return
        owed, th.owed = th.owed, None
        if not pass_exception:
            self._t.cont(th, 0)          # every breakpoint hit: the rest is for signals
        elif not self._pass_on(th, owed):
            return                       # held again, for its last chance: still frozen
        proc = self._procs.get(th.pid)
        if proc is not None and proc.frozen:
            self._t.thaw(proc)

    def _pass_on(self, th: Thread, owed: _ffi.SigInfo | None) -> bool:
        """Continue held thread `th` with the signal it stopped for (resume, pass_exception);
        False when it is kept held instead (_second_chance)."""
        tid = th.tid
        if owed is not None:
            # A sent SIGTRAP reported after our own trap at the same stop: delivered as its
            # sender sent it, not as the trap (or the step) the thread stopped for since.
            th.trap = None
            try:
                _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, owed)
            except _ffi.SyscallError as e:
                if e.errno != _ESRCH:
                    raise
            th.signal = int(owed.si_signo)
        elif self._second_chance(th):
            return False
        if (th.signal == signal.SIGTRAP and th.guard is None
                and procfs.signal_caught(th.pid, tid, signal.SIGTRAP)):
            self._enter_trap_handler(th)
        else:
            self._t.cont(th, th.signal)
        return True

    def _enter_trap_handler(self, th: Thread) -> None:
        """Deliver SIGTRAP to the program's handler, and let the handler run with SIGTRAP
        unblocked. While SIGTRAP is blocked, every trap of ours (an int3, a step) would
        make the kernel reset the handler to the default (it does so for a blocked signal
        it forces), and the program would die of its next SIGTRAP. Delivered with a single
        step, the thread stops at the handler's first instruction, before it runs (a
        ptrace notification, not a forced trap), where the mask is changed; the mask saved
        in the signal frame, which sigreturn restores, is the program's own."""
        t, tid = self._t, th.tid
        t.flush(th)
        th.step()
        try:
            _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, tid, None, signal.SIGTRAP)
        except _ffi.SyscallError as e:
            if e.errno != _ESRCH:
                raise
            return
        status = t.waitpid_tid(tid)
        entered = (os.WIFSTOPPED(status) and not status >> 16 and os.WSTOPSIG(status) == signal.SIGTRAP
                   and _ffi.get_siginfo(tid, th.siginfo).si_code == _HANDLER_ENTERED)
        if not entered:
            self._queue_status((tid, status))      # it died, or faulted setting up the frame
            return
        th.stop()
        th.regs_valid = False
        _ffi.set_sigmask(tid, _ffi.get_sigmask(tid) & ~_TRAP_BIT)
        th.signal, th.trap = 0, None
        t.cont(th, 0)

    def hold_others(self, tid: int) -> None:
        self._t.freeze(tid)

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
        t = self._t
        th = t.stopped_thread(tid)
        proc = self._procs[th.pid]
        with t.all_stopped(proc, keep=tid):
            while True:
                t.flush(th)
                th.step()
                try:
                    _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, tid, None, 0)
                    status = t.waitpid_tid(tid)
                except _ffi.SyscallError as e:
                    raise t.lost(proc, e) from None
                events = self._decoder.handle(tid, status)
                if th.guard is not None and th.tid in self._threads:
                    # The instruction touched a guarded page: complete it with the page
                    # open now, so the step makes progress (any GUARD_PAGE hit is returned).
                    events += self._guards.step_past(proc, th)
                    th.hold()
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
        rip = self._t.regs(th).rip
        return DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, th.pid, th.tid,
                          ExceptionInfo(ExceptionCode.SINGLE_STEP, rip, signal="SIGTRAP"))

    # -- state of a stopped thread -------------------------------------------
    def registers(self, tid: int) -> MutableMapping[str, int]:
        th = self._threads.get(tid)
        if th is None or th.state not in IN_A_STOP:
            th = self._stopped_thread(tid)         # (raises: why not)
        if not th.regs_valid:                      # (asked twice per hit: once a call)
            self._regs(th)
        return th.view

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        proc = self._t.proc(pid)
        return self._t.probes.mask(pid, address, proc.rdv.mask(address, proc.read(address, size)))

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        proc = self._procs.get(pid)      # (each emulated push of a soft hit writes)
        (proc if proc is not None else self._t.proc(pid)).write(address, data)

    def call_function(self, pid: int, address: int, *args: int) -> int:
        return self._inject.call(pid, address, args)

    def threads(self, pid: int) -> list[int]:
        return sorted(self._t.proc(pid).threads)

    def command_line(self, pid: int) -> list[str] | None:
        return procfs.cmdline(pid)

    def thread_name(self, pid: int, tid: int) -> str | None:
        return procfs.comm(pid, tid)

    def modules(self, pid: int) -> list[Module]:
        proc = self._t.proc(pid)
        main = [Module(proc.image_path, proc.image_base or 0)]
        return main + [Module(path, base) for base, path in proc.rdv.known.items()]

    # -- system calls (syscalls.py, seccomp.py) ------------------------------------
    def trace_syscalls(self, pid: int, numbers: frozenset[int], exits: frozenset[int]) -> None:
        self._decoder.syscalls.trace(self._t.proc(pid), numbers, exits, filtered=False)

    def skip_syscall(self, tid: int, retval: int) -> None:
        self._decoder.syscalls.skip(self._t.stopped_thread(tid), retval)

    # -- hardware breakpoints --------------------------------------------------
    def set_hardware_breakpoint(self, pid: int, slot: int, address: int, access: str, size: int, *,
                                sample: bool = False) -> None:
        proc = self._t.proc(pid)
        proc.hw.set(slot, address, access, size, sampled=sample)
        self._apply_hw(proc)

    def clear_hardware_breakpoint(self, pid: int, slot: int) -> None:
        proc = self._procs.get(pid)
        if proc is None:
            return          # gone (its exit event not handled yet): nothing left to clear
        proc.hw.clear(slot)
        self._apply_hw(proc)

    def _apply_hw(self, proc: Process) -> None:
        with self._t.all_stopped(proc):
            for th in proc.threads.values():
                if th.stopped:      # an in_vfork one is set when it is back (decode.py, _out_of_vfork)
                    self._sampling.program(proc, th.tid)

    # -- sampled soft breakpoints (uprobes.py) --------------------------------------
    def sample_code(self, pid: int, address: int) -> str | None:
        proc = self._t.proc(pid)
        reason = self._t.probes.add(pid, [tid for tid, th in proc.threads.items() if not th.zombie], address)
        if reason is None:
            self._sampling.active = True
            if proc.unpin_to is not None:
                # A hit that stops no more runs best beside the tracer, not on its CPU
                # (as a run whose every breakpoint is sampled: engine/session.py).
                _unpin(proc.unpin_to, list(proc.threads))
                proc.unpin_to = None
        return reason

    def unsample_code(self, pid: int, address: int) -> None:
        self._t.probes.remove(pid, address)

    def take_samples(self) -> list[DebugEvent]:
        return self._sampling.take()

    def sampling_problems(self) -> list[str]:
        return self._sampling.problems()

    # -- memory breakpoints (guard.py) -------------------------------------------
    def set_memory_breakpoint(self, pid: int, address: int, size: int, access: str) -> None:
        self._guards.set(pid, address, size, access)

    def clear_memory_breakpoint(self, pid: int, address: int) -> None:
        self._guards.clear(pid, address)
