"""Attaching to a running process: seizing every thread, and the events that describe what was already there."""

from __future__ import annotations

import os

from ...errors import TargetError
from ...events import CreateProcessInfo, CreateThreadInfo, DebugEvent, EventCode, LoadDllInfo
from . import _ffi, procfs
from .rendezvous import Rendezvous, main_image_base
from .signals import STOP_SIGNALS
from .state import Process
from .stops import Events, Tracees

_ESRCH = 3


def seize_all(tracees: Tracees, proc: Process, options: int) -> None:
    """PTRACE_SEIZE and interrupt every thread of proc, new ones included until none
    appears, and wait for each to stop. A stop other than our interrupt (a signal that
    came first) is kept in `tracees.deferred` to be decoded after the attach events."""
    seized: set[int] = set()
    while True:
        fresh = [t for t in procfs.tasks(proc.pid) if t not in seized]
        if not fresh:
            break
        for tid in fresh:
            if tid == proc.pid and procfs.task_state(proc.pid, tid) in ("Z", "X"):
                # The main thread called pthread_exit: a zombie (it cannot be seized) until
                # the last thread exits; the process lives on in its other threads.
                proc.threads[tid].zombie = True
                seized.add(tid)
                continue
            try:
                _ffi.ptrace(_ffi.PTRACE_SEIZE, tid, None, options)
                _ffi.ptrace(_ffi.PTRACE_INTERRUPT, tid, None, None)
            except _ffi.SyscallError as e:
                if tid == proc.pid or e.errno != _ESRCH:
                    raise TargetError(f"cannot attach to process {proc.pid}: {e.strerror}") from None
                continue  # the thread exited meanwhile
            seized.add(tid)
    for tid in sorted(seized):
        th = tracees.add_thread(proc, tid) if tid not in proc.threads else proc.threads[tid]
        if th.zombie:
            continue
        if procfs.in_vfork(proc.pid, tid):
            # It stops (VFORK_DONE, then our interrupt) once its child execs or exits;
            # waiting for that here could take for ever. All-stop passes it by meanwhile.
            th.in_vfork = True
            continue
        status = tracees.waitpid_tid(tid)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            tracees.drop_thread(proc, tid)
            continue
        th.stop()
        if status >> 16 != _ffi.PTRACE_EVENT_STOP:
            tracees.deferred.append((tid, status))
        else:
            th.group_stop = os.WSTOPSIG(status) in STOP_SIGNALS     # attached to a stopped process
    if proc.pid not in proc.threads or all(th.zombie for th in proc.threads.values()):
        raise TargetError(f"cannot attach to process {proc.pid}: it exited")


def attach_events(proc: Process) -> Events:
    """CREATE_PROCESS, a LOAD_DLL per module loaded, a CREATE_THREAD per other thread;
    every thread is held for them."""
    aux = procfs.auxv(proc.pid)
    proc.image_path = procfs.exe(proc.pid)
    proc.image_base = main_image_base(proc.pid, proc.image_path, aux)
    proc.rdv = Rendezvous.locate(proc.pid, aux)
    loaded, _ = proc.rdv.sync(proc.read)
    if proc.rdv.loader_path and proc.rdv.loader_base not in proc.rdv.known:
        proc.rdv.known[proc.rdv.loader_base] = proc.rdv.loader_path
        loaded.insert(0, (proc.rdv.loader_path, proc.rdv.loader_base))
    proc.rdv.arm(proc.read, proc.write)
    pid = proc.pid
    for th in proc.threads.values():
        if th.stopped:
            th.hold()
    events = [DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, pid, pid,
                         CreateProcessInfo(proc.image_path, proc.image_base))]
    events += [DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, pid, pid, LoadDllInfo(path, base))
               for path, base in loaded]
    events += [DebugEvent(EventCode.CREATE_THREAD_DEBUG_EVENT, pid, tid, CreateThreadInfo())
               for tid in sorted(proc.threads) if tid != pid]
    return events
