"""The tracee registry and the mechanics of ptrace-stops: register cache, continue,
interrupt (all-stop), reap. LinuxBackend builds its event decoding on top of this."""

from __future__ import annotations

import os
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

from ...errors import DebuggerError, TargetLost
from ...events import DebugEvent, EventCode
from . import _ffi, perfbp
from .state import Process, Thread

_ESRCH = 3
_GONE = 0      # the status of a thread that exited with 0: what is said of one exec took
Status = tuple[int, int]
Events = list[DebugEvent]


class StopControl:
    """Which processes and threads are traced, which are stopped, and the queue of
    events not yet handed to the engine."""

    _handle: Callable[[int, int], Events]     # the subclass's one status decoder

    def __init__(self) -> None:
        self._procs: dict[int, Process] = {}
        self._threads: dict[int, Thread] = {}
        self._queue: deque[DebugEvent] = deque()
        self._deferred: deque[Status] = deque()      # statuses read early, handled in order
        # Sampled hardware breakpoints (perfbp.py): hits not handed out yet, the pids
        # paused until the engine catches up, and what went wrong with sampling.
        self._samples: deque[DebugEvent] = deque()
        self._paused: set[int] = set()
        self._sampling_lost = 0
        self._sampling_refused: set[str] = set()

    def _add_process(self, pid: int, *, spawned: bool, follow_forks: bool) -> Process:
        proc = Process(pid, spawned, follow_forks)
        self._procs[pid] = proc
        self._add_thread(proc, pid)
        return proc

    def _add_thread(self, proc: Process, tid: int) -> Thread:
        th = Thread(tid, proc.pid, self._regs)
        proc.threads[tid] = th
        self._threads[tid] = th
        return th

    def _forget(self, proc: Process) -> None:
        self._close_sampler(proc)
        for tid in proc.threads:
            self._threads.pop(tid, None)
        proc.threads.clear()
        self._procs.pop(proc.pid, None)
        proc.close()

    def _proc(self, pid: int) -> Process:
        proc = self._procs.get(pid)
        if proc is None:
            raise DebuggerError(f"process {pid} is not traced")
        return proc

    def _stopped_thread(self, tid: int) -> Thread:
        th = self._threads.get(tid)
        if th is None:
            # Its exit status came in while an event of it still waited in the queue
            # (SIGKILL from outside): the engine's exit event for it follows.
            raise TargetLost(f"thread {tid} has exited")
        if not th.stopped:
            raise DebuggerError(f"thread {tid} is not stopped")
        return th

    def _regs(self, th: Thread) -> _ffi.UserRegs:
        """The thread's registers, read once per stop (one PTRACE_GETREGS)."""
        if not th.regs_valid:
            if not th.stopped:
                raise DebuggerError(f"thread {th.tid} is not stopped")
            try:
                _ffi.get_regs(th.tid, th.regs)
            except _ffi.SyscallError as e:
                raise self._lost(self._procs.get(th.pid), e) from None
            th.regs_valid, th.regs_dirty = True, False
        return th.regs

    def _flush(self, th: Thread) -> None:
        if th.regs_dirty:
            _ffi.ptrace(_ffi.PTRACE_SETREGS, th.tid, None, th.regs)
            th.regs_dirty = False

    def _close_sampler(self, proc: Process) -> None:
        """Stop sampling in proc (exec, detach, kill) with a fresh Sampler, which keeps
        the hits not reported yet for whoever collects next."""
        sampler, proc.sampler = proc.sampler, perfbp.Sampler()
        sampler.close()
        self._sampling_lost += sampler.lost
        if sampler.refused is not None:
            self._sampling_refused.add(sampler.refused)
        proc.sampler.unread = sampler.unread

    def _cont(self, th: Thread, sig: int) -> None:
        proc = self._procs.get(th.pid)
        if proc is not None and proc.paused is not None:
            # Paused for its backlog of sampled hits: it goes on when _release says.
            proc.paused.append((th, sig))
            th.held = False
            return
        self._resume_thread(th, sig)

    def _release(self, proc: Process) -> None:
        """End a pause (_cont): continue every thread it kept, as asked then."""
        paused, proc.paused = proc.paused or [], None
        self._paused.discard(proc.pid)
        for th, sig in paused:
            if th.tid in self._threads and th.stopped and not th.held:
                self._resume_thread(th, sig)

    def _resume_thread(self, th: Thread, sig: int) -> None:
        try:
            self._flush(th)
            if th.group_stop and not sig:
                # Job control stopped it: it stays stopped, as without a debugger, and
                # SIGCONT will wake it with a PTRACE_EVENT_STOP of its own.
                _ffi.ptrace(_ffi.PTRACE_LISTEN, th.tid, None, None)
            else:
                _ffi.cont(th.tid, sig)
        except _ffi.SyscallError as e:
            if e.errno != _ESRCH:
                raise
        th.stopped = th.held = False
        th.regs_valid = False
        th.signal, th.trap = 0, None

    def _continue_internal(self, tid: int) -> None:
        th = self._threads.get(tid)
        if th is not None and th.stopped and not th.held:
            self._cont(th, 0)

    def _write(self, proc: Process, address: int, data: bytes) -> None:
        proc.write(address, data)

    def _lost(self, proc: Process | None, e: _ffi.SyscallError) -> DebuggerError:
        if e.errno == _ESRCH:
            return TargetLost(f"process {proc.pid if proc else '?'} vanished: {e}")
        return e

    def _waitpid_tid(self, tid: int) -> int:
        """The next status of `tid`. Waits for any child and keeps the others' statuses
        for later: waitpid(leader) alone would hang once the process is SIGKILLed, as
        the kernel holds the leader's exit back until every other thread is reaped."""
        th = self._threads.get(tid)
        leader = th.pid if th is not None and th.pid != tid else None
        for i, (got, status) in enumerate(self._deferred):
            if got == tid:
                del self._deferred[i]
                return status
            if got == leader and status >> 16 == _ffi.PTRACE_EVENT_EXEC:
                return _GONE
        while True:
            got, status = os.waitpid(-1, _ffi.WALL)
            if got == tid:
                return status
            self._deferred.append((got, status))
            if got == leader and status >> 16 == _ffi.PTRACE_EVENT_EXEC:
                # A thread of its process called execve: every other thread is gone, and
                # the one that exec'd goes on as the leader. No status of its own tid
                # would ever come.
                return _GONE

    def _interrupt_running(self, proc: Process, keep: int | None = None) -> list[Thread]:
        """Stop every running thread of proc but `keep`; return those now in an internal
        stop (ours to continue). Threads that report a real event instead are held."""
        sent: list[Thread] = []
        for th in list(proc.threads.values()):
            if th.stopped or th.tid == keep or th.in_vfork:
                continue      # in_vfork: runs nothing of its own until its VFORK_DONE stop
            try:
                _ffi.ptrace(_ffi.PTRACE_INTERRUPT, th.tid, None, None)
                sent.append(th)
            except _ffi.SyscallError:
                continue   # exiting: its exit status will tell
        ours: list[Thread] = []
        for th in sent:
            self._queue.extend(self._handle(th.tid, self._waitpid_tid(th.tid)))
            if th.stopped and not th.held and th.tid in self._threads:
                ours.append(th)
        return ours

    def _continue_all(self, threads: list[Thread]) -> None:
        for th in threads:
            if th.tid in self._threads and th.stopped and not th.held:
                self._cont(th, 0)

    @contextmanager
    def _all_stopped(self, proc: Process, keep: int | None = None) -> Iterator[None]:
        """Stop every running thread of proc (but `keep`), yield, continue those we stopped."""
        ours = self._interrupt_running(proc, keep)
        try:
            yield
        finally:
            self._continue_all(ours)

    def _freeze(self, tid: int) -> None:
        """Windows semantics for exceptions: while the engine handles one of held thread
        `tid`, the rest of its process stands still (until `tid` resumes), so a breakpoint
        it lifts to step over cannot be run past by a sibling thread between its
        write_memory, single_step and re-insertion."""
        th = self._threads.get(tid)
        proc = self._procs.get(th.pid) if th is not None else None
        if proc is None or th is None or not th.held or len(proc.threads) < 2:
            return
        proc.frozen.extend(self._interrupt_running(proc, keep=tid))

    def _thaw(self, proc: Process) -> None:
        frozen, proc.frozen = proc.frozen, []
        self._continue_all(frozen)

    def _reap(self, proc: Process) -> None:
        """Wait until proc's leader has exited, keeping other processes' statuses for later."""
        while proc.pid in self._procs:
            try:
                tid, status = os.waitpid(-1, _ffi.WALL)
            except ChildProcessError:
                return
            th = self._threads.get(tid)
            if th is None or th.pid != proc.pid:
                self._deferred.append((tid, status))
                continue
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._threads.pop(tid, None)
                proc.threads.pop(tid, None)
                if tid == proc.pid:
                    return
            else:
                # A stop reported before SIGKILL landed: let the thread go on to die.
                try:
                    _ffi.ptrace(_ffi.PTRACE_CONT, tid, None, 0)
                except _ffi.SyscallError:
                    pass

    def _drop_queued(self, pid: int) -> None:
        self._queue = deque(e for e in self._queue if e.pid != pid)

    def _collect_debug_strings(self) -> None:
        for proc in self._procs.values():
            if proc.pump is not None and proc.pump.pending():
                self._queue.extend(self._drain_debug_strings(proc, final=False))

    def _drain_debug_strings(self, proc: Process, *, final: bool) -> Events:
        if proc.pump is None:
            return []
        lines = proc.pump.take(final)
        return [DebugEvent(EventCode.OUTPUT_DEBUG_STRING_EVENT, proc.pid, proc.pid, info) for info in lines]
