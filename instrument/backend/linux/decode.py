"""Decoding one waitpid status of a traced thread into the debug events it means (and the thread's new stop state)."""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Callable, Mapping

from ...errors import DebuggerError, TargetLost
from ...events import (
    CreateProcessInfo, CreateThreadInfo, DebugEvent, EventCode, ExceptionInfo, ExitProcessInfo,
    ExitThreadInfo, LoadDllInfo, RipInfo, UnloadDllInfo,
)
from . import _ffi, debugregs, procfs
from .guard import Guards
from .guardcalls import GuardCalls
from .rendezvous import Rendezvous, main_image_base
from .sampling import Sampling
from ..siginfo import SENDER_CODES, VALUE_CODES
from .signals import STOP_SIGNALS, exception_for_signal, signal_name
from .state import Process, Thread
from .stops import Events, Tracees
from .syscalls import SyscallStops

_SYSCALL_TRAP = signal.SIGTRAP | 0x80
_SIGTRAP, _SIGSEGV = int(signal.SIGTRAP), int(signal.SIGSEGV)   # plain ints: compared on every stop
_INT3_CODES = (_ffi.SI_KERNEL, _ffi.TRAP_BRKPT)
_ESRCH = 3


class Decoder:
    """The one status decoder of LinuxBackend: `handle(tid, status)`."""

    def __init__(self, tracees: Tracees, guards: Guards, sampling: Sampling,
                 patched_bytes: Callable[[int], Mapping[int, bytes]]) -> None:
        self._t = tracees
        self._threads, self._procs, self._regs = tracees.threads, tracees.procs, tracees.regs  # every stop
        self._guards = guards
        self._sampling = sampling
        self._patched_bytes = patched_bytes          # the engine's int3s in a process (Backend)
        self._early: dict[int, int] = {}              # new tid -> its initial stop, seen before CLONE
        self.syscalls = SyscallStops(tracees)         # syscall and seccomp stops (syscalls.py)

    def handle(self, tid: int, status: int) -> Events:
        """Decode one waitpid status into the events it produces. A thread left
        stopped and not held is in an internal stop: the caller continues it."""
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
        th.stop()
        sig, event = os.WSTOPSIG(status), status >> 16
        try:
            if not event and sig != _SYSCALL_TRAP:
                return self._on_signal(proc, th, sig)      # the common case: a signal (or trap)
            if event == _ffi.PTRACE_EVENT_STOP:
                # A group-stop names its stopping signal; an interrupt (ours) or the end
                # of a group-stop (SIGCONT) says SIGTRAP.
                th.group_stop = sig in STOP_SIGNALS
                if th.in_vfork:
                    self._out_of_vfork(proc, th)    # attached while in vfork: its interrupt
                return []
            if sig == _SYSCALL_TRAP:
                if th.guard_calls:          # guarded pages: a call may touch one (guardcalls.py)
                    ours = self._guards.calls.on_syscall_stop(proc, th, self.syscalls.on_syscall_stop)
                    if ours is not None:
                        return ours
                return self.syscalls.on_syscall_stop(proc, th)
            if event in (_ffi.PTRACE_EVENT_CLONE, _ffi.PTRACE_EVENT_FORK, _ffi.PTRACE_EVENT_VFORK):
                # A vfork parent then waits in the kernel, deaf to PTRACE_INTERRUPT, until
                # its child execs or exits (VFORK_DONE): all-stop must not wait for it.
                th.in_vfork = event == _ffi.PTRACE_EVENT_VFORK
                return self._on_new_task(proc, th, event)
            if event == _ffi.PTRACE_EVENT_VFORK_DONE:
                self._out_of_vfork(proc, th)
                return []
            if event == _ffi.PTRACE_EVENT_EXEC:
                return self.on_exec(proc, th)
            if event == _ffi.PTRACE_EVENT_SECCOMP:
                if th.guard_call is not None or proc.guard_filter:
                    ours = self._guards.calls.on_seccomp(proc, th)     # guarded pages (guardcalls.py)
                    if ours is not None:
                        return ours
                return self.syscalls.on_seccomp(proc, th)
            return self._on_signal(proc, th, sig)
        except (_ffi.SyscallError, TargetLost) as e:
            if isinstance(e, TargetLost) or e.errno == _ESRCH:
                th.lose()           # killed while stopped (SIGKILL): its exit status follows
                return []
            raise

    def _out_of_vfork(self, proc: Process, th: Thread) -> None:
        """A thread back from vfork: debug registers set meanwhile (all-stop passed it
        by, as it could not stop) are set in it now."""
        th.in_vfork = False
        if proc.hw.active:
            self._sampling.program(proc, th.tid)

    def _on_signal(self, proc: Process, th: Thread, sig: int) -> Events:
        info = _ffi.get_siginfo(th.tid, th.siginfo)
        si_code, rip = info.si_code, self._regs(th).rip
        if sig == _SIGTRAP and si_code in _INT3_CODES and rip - 1 == proc.rdv.brk and proc.rdv.saved is not None:
            return self._on_rendezvous(proc, th)
        if sig == _SIGSEGV:
            guarded = self._guards.on_fault(proc, th, si_code, info.si_addr)
            if guarded is not None:
                return guarded
        if si_code <= 0 and sig == _SIGTRAP:
            merged = self._merged_trap(proc, th, info, rip)
            if merged is not None:
                return merged
        hw_slots = self._debug_register_hits(proc, th, sig, si_code, rip)
        watched = None
        if hw_slots and proc.hw.watches:
            watched = next((proc.hw.addresses[s] for s in hw_slots if proc.hw.is_watch(s)), None)
        # Traps the CPU raised for us (int3, step, DR hits) are the debugger's, never fatal.
        ours = sig == _SIGTRAP and si_code > 0
        fatal = not ours and procfs.signal_is_fatal(proc.pid, th.tid, sig)
        exc = exception_for_signal(sig, si_code, info.si_addr, rip, not fatal, hw_slots, watched)
        if si_code <= 0:
            exc = _with_sender(exc, info)
        th.signal = sig
        th.hold()
        th.trap = exc if ours else None
        return [DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, proc.pid, th.tid, exc)]

    def _merged_trap(self, proc: Process, th: Thread, info: _ffi.SigInfo, rip: int) -> Events | None:
        """A SIGTRAP another process sent to this thread (tgkill) that was pending when the
        thread ran into one of our int3s: the kernel queues one SIGTRAP per thread at a
        time, so the int3's trap was dropped and the stop carries the sender's siginfo,
        pc one past the int3. Both happened: report our trap first, then the signal, which
        resume() delivers with the sender's siginfo (Thread.owed). An int3 that is ours
        and in place at pc-1 is what tells: a thread can only be past it by running it.
        None when this is a plain sent SIGTRAP."""
        address = rip - 1
        rendezvous = address == proc.rdv.brk and proc.rdv.saved is not None
        if not rendezvous and address not in self._patched_bytes(proc.pid):
            return None
        try:
            if proc.read(address, 1) != b"\xcc":
                return None
        except DebuggerError:
            return None
        owed = _ffi.SigInfo.from_buffer_copy(info)
        fatal = procfs.signal_is_fatal(proc.pid, th.tid, _SIGTRAP)
        signal_event = DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, proc.pid, th.tid, _with_sender(
            exception_for_signal(_SIGTRAP, info.si_code, 0, address, not fatal), info))
        if rendezvous:
            events = self._on_rendezvous(proc, th)
        else:
            events = [DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, proc.pid, th.tid,
                                 exception_for_signal(_SIGTRAP, _ffi.SI_KERNEL, 0, rip, True))]
        th.signal, th.trap, th.owed = _SIGTRAP, None, owed
        th.hold()
        return events + [signal_event]

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
        regs = self._t.regs(th)
        regs.rip = int.from_bytes(proc.read(regs.rsp, 8), "little")
        regs.rsp += 8
        th.regs_dirty = True
        loaded, unloaded = proc.rdv.sync(proc.read)
        events = [DebugEvent(EventCode.UNLOAD_DLL_DEBUG_EVENT, proc.pid, th.tid, UnloadDllInfo(base, path))
                  for path, base in unloaded]
        events += [DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, proc.pid, th.tid, LoadDllInfo(path, base))
                   for path, base in loaded]
        if events:
            th.hold()
        else:
            th.unhold()
        return events

    def on_exec(self, proc: Process, th: Thread) -> Events:
        """The exec stop of proc (or its first stop after spawn): a new image, held."""
        if th.tid != proc.pid:
            # A non-leader thread called execve: it now carries the leader's tid
            # and every other thread is gone without an exit report of its own.
            th = self._t.threads[proc.pid]
        for other in [t for t in proc.threads if t != proc.pid]:
            self._t.drop_thread(proc, other)
        th.stop()
        th.hold()
        th.guard, proc.guards = None, None      # a new address space: no guarded pages
        th.guard_call, th.guard_calls = None, False
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
        proc.rdv.arm(proc.read, proc.write)
        if proc.hw.active:
            proc.hw = debugregs.HardwareSlots()   # exec clears the debug registers
        # Hits sampled in the old image come before its CREATE_PROCESS; its events go.
        self._t.close_sampler(proc)
        self._sampling.collect(taken=self._sampling.events(proc))
        return events

    def _on_new_task(self, proc: Process, parent: Thread, event: int) -> Events:
        """A clone/fork/vfork stop of `parent` (internal: it continues); the new task is
        waited to its first stop, so it is held before it runs a single instruction."""
        new_tid = _ffi.get_event_msg(parent.tid)
        status = self._early.pop(new_tid, None)
        if status is None:
            status = self._t.waitpid_tid(new_tid)
        if not os.WIFSTOPPED(status):
            return []           # died before its first instruction
        if event == _ffi.PTRACE_EVENT_CLONE:
            th = self._t.add_thread(proc, new_tid)
            th.guard_calls = GuardCalls.stops_all(proc)
            th.stop()
            th.hold()
            if proc.unpin_to is not None:
                _unpin(proc.unpin_to, list(proc.threads))
                proc.unpin_to = None
            if proc.hw.active:
                self._sampling.program(proc, new_tid)   # clone copies neither debug registers nor perf events
            self._t.probes.add_thread(proc.pid, new_tid)
            return [DebugEvent(EventCode.CREATE_THREAD_DEBUG_EVENT, proc.pid, new_tid, CreateThreadInfo())]
        return self._on_fork(proc, new_tid, event == _ffi.PTRACE_EVENT_VFORK)

    def _on_fork(self, parent: Process, pid: int, vfork: bool) -> Events:
        if not parent.follow_forks:
            # Traced only so that our rendezvous int3 can be taken out of a fork
            # child before it runs; a vfork child shares the parent's memory, so
            # its bytes must stay as they are.
            try:
                if not vfork:
                    patches = dict(self._patched_bytes(parent.pid))
                    if parent.rdv.brk is not None and parent.rdv.saved is not None:
                        patches[parent.rdv.brk] = parent.rdv.saved
                    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
                        for address, original in patches.items():
                            mem.seek(address)
                            mem.write(original)
                self._guards.fork(parent, pid, follow=False, vfork=vfork)
                if parent.unpin_to is not None:
                    _unpin(parent.unpin_to, [pid])      # untraced from now on: as if never traced
                _ffi.ptrace(_ffi.PTRACE_DETACH, pid, None, 0)
            except (OSError, DebuggerError):
                pass
            return []
        child = self._t.add_process(pid, spawned=parent.spawned, follow_forks=True)
        child.parent_pid = parent.pid
        child.unpin_to = parent.unpin_to           # a copy of a single-threaded process
        child.image_path, child.image_base = parent.image_path, parent.image_base
        child.rdv = Rendezvous(pid, parent.rdv.loader_path, parent.rdv.loader_base, parent.rdv.brk,
                               parent.rdv.r_debug, parent.rdv.saved, dict(parent.rdv.known))
        child.hw = debugregs.HardwareSlots(list(parent.hw.addresses), parent.hw.dr7, parent.hw.sampled)
        child.guards = self._guards.fork(parent, pid, follow=True, vfork=vfork)
        child.guard_filter = parent.guard_filter        # the filter went with the fork
        th = child.threads[pid]
        GuardCalls.sync(child)
        if parent.sys is not None:      # the filter (if any) went with the fork: so do we
            self.syscalls.trace(child, parent.sys.numbers, parent.sys.exits, filtered=parent.sys.filtered)
        th.stop()
        th.hold()
        if child.hw.active:
            self._sampling.program(child, pid)
        self._t.probes.fork(parent.pid, pid)
        events = [DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, pid, pid,
                             CreateProcessInfo(child.image_path, child.image_base, parent.pid))]
        events += [DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, pid, pid, LoadDllInfo(path, base))
                   for base, path in child.rdv.known.items()]
        return events

    def _on_exit(self, proc: Process, th: Thread, status: int) -> Events:
        self._t.drop_thread(proc, th.tid)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        proc.sampler.drop(th.tid)
        self._t.probes.drop_thread(th.tid)
        self._sampling.collect(taken=self._sampling.events(proc))    # handed out before its exit
        if th.tid != proc.pid:
            return [DebugEvent(EventCode.EXIT_THREAD_DEBUG_EVENT, proc.pid, th.tid, ExitThreadInfo(code))]
        # The leader's status comes last: the kernel delays it until every other
        # thread has been reaped. Drain stderr first so its lines come before the exit.
        events = self._t.drain_debug_strings(proc, final=True)
        sig = signal_name(os.WTERMSIG(status)) if os.WIFSIGNALED(status) else None
        if sig == "SIGKILL":
            # Our own kill() reaps without coming here, and SIGKILL cannot be
            # caught: the target was taken from under us (RIP_EVENT, SPEC 2).
            events.append(DebugEvent(EventCode.RIP_EVENT, proc.pid, th.tid,
                                     RipInfo("the target was killed by SIGKILL from outside", sig)))
        else:
            events.append(DebugEvent(EventCode.EXIT_PROCESS_DEBUG_EVENT, proc.pid, th.tid,
                                     ExitProcessInfo(code, sig)))
        self._t.forget(proc)
        return events


def _with_sender(exc: ExceptionInfo, info: _ffi.SigInfo) -> ExceptionInfo:
    """A sent signal's payload with who sent it: si_pid and si_uid (the first two ints of
    the union, read together as si_addr) and the sigval that follows them."""
    code = info.si_code
    if code not in SENDER_CODES and code not in VALUE_CODES:
        return exc
    sender = info.si_addr
    return dataclasses.replace(
        exc, si_pid=sender & 0xFFFFFFFF if code in SENDER_CODES else None,
        si_uid=sender >> 32 if code in SENDER_CODES else None,
        si_value=int.from_bytes(bytes(info._rest[:8]), "little") if code in VALUE_CODES else None)


def _unpin(cpus: set[int], tids: list[int]) -> None:
    """Give threads of a target started pinned to our CPU their CPUs back. Pinning makes a
    stop ~5x cheaper here, and changes nothing a single thread can notice; with a second
    thread it would make them share one CPU, so a multi-threaded target runs as untraced."""
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass      # gone meanwhile
