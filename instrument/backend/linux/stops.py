"""The tracee registry and the mechanics of ptrace-stops: register cache, continue, pause, interrupt (all-stop), reap."""

from __future__ import annotations

import os
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

from ...errors import DebuggerError, TargetLost
from ...events import DebugEvent, EventCode
from ... import interrupts
from . import _ffi, perfbp, procfs, uprobes
from .state import IN_A_STOP, STOPPED, Process, Thread

_ESRCH = 3
_GONE = 0      # the status of a thread that exited with 0: what is said of one exec took
Status = tuple[int, int]
Events = list[DebugEvent]
# All-stop waits for each interrupted thread in ticks: between them it looks at the
# threads that have not stopped yet (stopped_or_not). A thread asleep in the kernel
# (D) for longer than the grace is passed by; with SIGINT or SIGTERM pending, at once.
_TICK = 0.05
_GRACE = 2.0


def _no_decoder(tid: int, status: int) -> Events:
    raise DebuggerError("the Linux backend's stop decoder is not bound")


def _no_guards(proc: Process, th: Thread) -> bool:
    raise DebuggerError("the Linux backend's guard pages are not bound")


def _poll_tick(seconds: float) -> Status | None:
    deadline = time.monotonic() + seconds
    while True:
        got = os.waitpid(-1, _ffi.WALL | os.WNOHANG)
        if got[0]:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.002)


class Tracees:
    """Which processes and threads are traced, which are stopped, and the queue of
    events not yet handed to the engine.

    The containers (`procs`, `threads`, `queue`, `deferred`) are never rebound: the
    backend's parts keep references to them."""

    def __init__(self) -> None:
        self.procs: dict[int, Process] = {}
        self.threads: dict[int, Thread] = {}
        self.queue: deque[DebugEvent] = deque()
        self.deferred: deque[Status] = deque()      # statuses read early, handled in order
        # pids paused for a backlog of sampled hits (sampling.py decides, `pause` does it)
        self.paused: set[int] = set()
        # What sampling lost in the samplers closed so far (close_sampler), for the summary.
        self.sampling_lost = 0
        self.sampling_refused: set[str] = set()
        # Sampled soft breakpoints (uprobes.py): every process's, in rings of the whole backend.
        self.probes = uprobes.CodeProbes()
        # The two parts built over this registry that it must call back, bound by
        # LinuxBackend once they exist: decoding the statuses of threads it interrupts
        # (decode.py), and completing a thread's access to a guarded page before it
        # continues (guard.py; True: continue it now, without a signal).
        self.decode: Callable[[int, int], Events] = _no_decoder
        self.step_guarded: Callable[[Process, Thread], bool] = _no_guards
        # Any child's next status within `seconds`, or None (the tick passed, or SIGINT or
        # SIGTERM came: interrupts.state.pending says which); LinuxBackend binds its alarm.
        self.wait_tick: Callable[[float], Status | None] = _poll_tick

    # -- the registry ----------------------------------------------------------------
    def add_process(self, pid: int, *, spawned: bool, follow_forks: bool) -> Process:
        proc = Process(pid, spawned, follow_forks)
        self.procs[pid] = proc
        self.add_thread(proc, pid)
        return proc

    def add_thread(self, proc: Process, tid: int) -> Thread:
        th = Thread(tid, proc.pid, self.regs)
        # Every call stops a thread of a process traced without a filter (syscalls.py).
        th.syscall_stops = proc.sys is not None and not proc.sys.filtered
        proc.threads[tid] = th
        self.threads[tid] = th
        return th

    def drop_thread(self, proc: Process, tid: int) -> None:
        self.threads.pop(tid, None)
        proc.threads.pop(tid, None)

    def forget(self, proc: Process) -> None:
        self.close_sampler(proc)
        for tid in proc.threads:
            self.threads.pop(tid, None)
        proc.threads.clear()
        self.procs.pop(proc.pid, None)
        proc.close()

    def proc(self, pid: int) -> Process:
        proc = self.procs.get(pid)
        if proc is None:
            raise DebuggerError(f"process {pid} is not traced")
        return proc

    def stopped_thread(self, tid: int) -> Thread:
        th = self.threads.get(tid)
        if th is None:
            # Its exit status came in while an event of it still waited in the queue
            # (SIGKILL from outside): the engine's exit event for it follows.
            raise TargetLost(f"thread {tid} has exited")
        if th.state not in IN_A_STOP:       # not th.stopped, without a call: asked on every stop
            raise DebuggerError(f"thread {tid} is not stopped")
        return th

    def close_sampler(self, proc: Process) -> None:
        """Stop sampling in proc (exec, detach, kill) with a fresh Sampler, which keeps
        the hits not reported yet for whoever collects next."""
        sampler, proc.sampler = proc.sampler, perfbp.Sampler()
        sampler.close()
        self.probes.drop(proc.pid)       # (their hits wait in probes.unread)
        self.sampling_lost += sampler.lost
        if sampler.refused is not None:
            self.sampling_refused.add(sampler.refused)
        proc.sampler.unread = sampler.unread

    def drop_queued(self, pid: int) -> None:
        kept = [e for e in self.queue if e.pid != pid]
        self.queue.clear()
        self.queue.extend(kept)

    # -- registers ---------------------------------------------------------------------
    def regs(self, th: Thread) -> _ffi.UserRegs:
        """The thread's registers, read once per stop (one PTRACE_GETREGS)."""
        if not th.regs_valid:
            if th.state not in IN_A_STOP:       # not th.stopped, without a call
                raise DebuggerError(f"thread {th.tid} is not stopped")
            try:
                _ffi.get_regs(th.tid, th.regs)
            except _ffi.SyscallError as e:
                raise self.lost(self.procs.get(th.pid), e) from None
            th.regs_valid, th.regs_dirty = True, False
        return th.regs

    def flush(self, th: Thread) -> None:
        if th.regs_dirty:
            _ffi.set_regs(th.tid, th.regs)
            th.regs_dirty = False

    def lost(self, proc: Process | None, e: _ffi.SyscallError) -> DebuggerError:
        if e.errno == _ESRCH:
            return TargetLost(f"process {proc.pid if proc else '?'} vanished: {e}")
        return e

    # -- continuing ------------------------------------------------------------------
    def cont(self, th: Thread, sig: int) -> None:
        """Continue a stopped thread with `sig`, unless its process is paused (it then
        waits for `release`). A thread stopped on a guarded page first completes the
        access it faulted on (guard.py), and then goes on without a signal."""
        if th.guard is not None and th.stopped:
            proc = self.procs.get(th.pid)
            if proc is not None:
                if not self.step_guarded(proc, th):
                    return           # the step raised an event of its own, or it was killed
                sig = 0
        proc = self.procs.get(th.pid)
        if proc is not None and proc.paused is not None:
            # Paused for its backlog of sampled hits: it goes on when `release` says.
            proc.paused.append((th, sig))
            th.unhold()
            return
        self.resume_thread(th, sig)

    def resume_thread(self, th: Thread, sig: int) -> None:
        """PTRACE_CONT (or LISTEN) now, the pause and guard pages notwithstanding."""
        try:
            if th.regs_dirty:
                self.flush(th)
            if th.group_stop and not sig:
                # Job control stopped it: it stays stopped, as without a debugger, and
                # SIGCONT will wake it with a PTRACE_EVENT_STOP of its own.
                _ffi.ptrace(_ffi.PTRACE_LISTEN, th.tid, None, None)
            elif th.syscall_stops or th.guard_calls:
                _ffi.syscall_cont(th.tid, sig)      # to the next system call stop (syscalls.py, guardcalls.py)
            else:
                _ffi.cont(th.tid, sig)
        except _ffi.SyscallError as e:
            if e.errno != _ESRCH:
                raise
        th.ran()

    def continue_internal(self, tid: int) -> None:
        th = self.threads.get(tid)
        if th is not None and th.state is STOPPED:
            self.cont(th, 0)

    def continue_all(self, threads: list[Thread]) -> None:
        for th in threads:
            if th.tid in self.threads and th.state is STOPPED:
                self.cont(th, 0)

    def pause(self, proc: Process) -> None:
        """Stop every thread of proc and keep every thread continued meanwhile stopped
        (cont), until `release`."""
        proc.paused = []
        self.paused.add(proc.pid)
        for th in self.interrupt_running(proc):
            self.cont(th, 0)               # kept stopped: paused

    def release(self, proc: Process) -> None:
        """End a pause: continue every thread it kept, as asked then."""
        paused, proc.paused = proc.paused or [], None
        self.paused.discard(proc.pid)
        for th, sig in paused:
            if th.tid in self.threads and th.state is STOPPED:
                self.resume_thread(th, sig)

    # -- waiting -----------------------------------------------------------------------
    def waitpid_tid(self, tid: int) -> int:
        """The next status of `tid`. Waits for any child and keeps the others' statuses
        for later: waitpid(leader) alone would hang once the process is SIGKILLed, as
        the kernel holds the leader's exit back until every other thread is reaped."""
        leader, status = self._deferred_status(tid)
        if status is not None:
            return status
        while True:
            got, status = os.waitpid(-1, _ffi.WALL)
            if got == tid:
                return status
            if self._keep(got, status, leader):
                return _GONE

    def _deferred_status(self, tid: int) -> tuple[int | None, int | None]:
        """(tid's leader when tid is not one, a status of tid read early or None)."""
        th = self.threads.get(tid)
        leader = th.pid if th is not None and th.pid != tid else None
        for i, (got, status) in enumerate(self.deferred):
            if got == tid:
                del self.deferred[i]
                return leader, status
            if got == leader and status >> 16 == _ffi.PTRACE_EVENT_EXEC:
                return leader, _GONE
        return leader, None

    def _keep(self, got: int, status: int, leader: int | None) -> bool:
        """Keep another child's status for later; True when it says the thread waited
        for is gone: a thread of its process called execve, every other thread is gone,
        and the one that exec'd goes on as the leader. No status of its own would come."""
        self.deferred.append((got, status))
        return got == leader and status >> 16 == _ffi.PTRACE_EVENT_EXEC

    def _interrupt_status(self, th: Thread) -> int | None:
        """th's next status after our PTRACE_INTERRUPT, or None when it will not stop:
        a zombie leader (marked: it is passed by from now on), or a thread asleep in the
        kernel (D: a disk, a network file system, a freezer) past the grace, or at once
        while SIGINT or SIGTERM waits to end the session, which they then do. The wait
        is the alarm's: those signals are answered while it blocks."""
        tid = th.tid
        since = time.monotonic()
        while True:
            # Checked again after every tick: a wait that the alarm (or SIGINT, SIGTERM)
            # cut short just after it took a status keeps that status in `deferred`.
            leader, status = self._deferred_status(tid)
            if status is not None:
                return status
            got = self.wait_tick(_TICK)
            if got is not None:
                if got[0] == tid:
                    th.stuck = False
                    return got[1]
                if self._keep(got[0], got[1], leader):
                    return _GONE
                continue
            state = procfs.task_state(th.pid, tid)
            if state in ("Z", "X") and tid == th.pid:
                th.zombie = True       # its exit status comes after the last thread's
                return None
            if state == "D" and (th.stuck or interrupts.state.pending is not None
                                 or time.monotonic() - since > _GRACE):
                th.stuck = True        # its stop comes later, an internal one
                return None

    # -- all-stop ----------------------------------------------------------------------
    def interrupt_running(self, proc: Process, keep: int | None = None) -> list[Thread]:
        """Stop every running thread of proc but `keep`; return those now in an internal
        stop (ours to continue). Threads that report a real event instead are held."""
        sent: list[Thread] = []
        for th in list(proc.threads.values()):
            if th.stopped or th.tid == keep or th.in_vfork or th.zombie:
                continue      # in_vfork: runs nothing of its own until its VFORK_DONE stop
            try:
                _ffi.ptrace(_ffi.PTRACE_INTERRUPT, th.tid, None, None)
                sent.append(th)
            except _ffi.SyscallError:
                continue   # exiting: its exit status will tell
        ours: list[Thread] = []
        for th in sent:
            status = self._interrupt_status(th)
            if status is None:
                continue       # it cannot stop now: passed by (see _interrupt_status)
            self.queue.extend(self.decode(th.tid, status))
            if th.state is STOPPED and th.tid in self.threads:
                ours.append(th)
        return ours

    @contextmanager
    def all_stopped(self, proc: Process, keep: int | None = None) -> Iterator[None]:
        """Stop every running thread of proc (but `keep`), yield, continue those we stopped."""
        ours = self.interrupt_running(proc, keep)
        try:
            yield
        finally:
            self.continue_all(ours)

    def freeze(self, tid: int) -> None:
        """Windows semantics for exceptions: while the engine handles one of held thread
        `tid`, the rest of its process stands still (until `tid` resumes), so a breakpoint
        it lifts to step over cannot be run past by a sibling thread between its
        write_memory, single_step and re-insertion."""
        th = self.threads.get(tid)
        proc = self.procs.get(th.pid) if th is not None else None
        if proc is None or th is None or not th.held or len(proc.threads) < 2:
            return
        proc.frozen.extend(self.interrupt_running(proc, keep=tid))

    def thaw(self, proc: Process) -> None:
        frozen, proc.frozen = proc.frozen, []
        self.continue_all(frozen)

    # -- the end -------------------------------------------------------------------------
    def reap(self, proc: Process) -> None:
        """Wait until proc's leader has exited, keeping other processes' statuses for later."""
        while proc.pid in self.procs:
            # Its statuses read early (waitpid_tid, a wait cut short by a signal) first:
            # the leader's exit may be among them, and would never come again.
            early = next((i for i, (tid, _) in enumerate(self.deferred) if tid in proc.threads), None)
            if early is not None:
                tid, status = self.deferred[early]
                del self.deferred[early]
            else:
                try:
                    tid, status = os.waitpid(-1, _ffi.WALL)
                except ChildProcessError:
                    return
            th = self.threads.get(tid)
            if th is None or th.pid != proc.pid:
                self.deferred.append((tid, status))
                continue
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self.drop_thread(proc, tid)
                if tid == proc.pid:
                    return
            else:
                # A stop reported before SIGKILL landed: let the thread go on to die.
                try:
                    _ffi.ptrace(_ffi.PTRACE_CONT, tid, None, 0)
                except _ffi.SyscallError:
                    pass

    # -- the target's stderr --------------------------------------------------------------
    def collect_debug_strings(self) -> None:
        for proc in self.procs.values():
            if proc.pump is not None and proc.pump.pending():
                self.queue.extend(self.drain_debug_strings(proc, final=False))

    def drain_debug_strings(self, proc: Process, *, final: bool) -> Events:
        if proc.pump is None:
            return []
        lines = proc.pump.take(final)
        return [DebugEvent(EventCode.OUTPUT_DEBUG_STRING_EVENT, proc.pid, proc.pid, info) for info in lines]
