"""The debug loop: wait for an event, dispatch it through the plan, continue — always continue.

One `Session` drives one target (and, with follow_forks, its children)
through a backend. It is composed of parts that each do one job, every one
below it: the breakpoints and where they are armed (arming.BreakpointSet),
the handlers (handlers.Handlers), exception dispatch (hits.ExceptionDispatch),
the records (records.Recorder), all over the per-process state of
process.ProcessState. Dispatch is a table lookup: event code -> handler;
exceptions go to int3 sites, debug-register slots and guarded ranges, and
everything else to the plan's HandlerTable. Every stop ends in `resume`, in a
`finally`.
"""

from __future__ import annotations

import enum
import gc
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import interrupts
from ..backend.base import Backend
from ..compiler.model import Plan
from ..errors import DebuggerError, TargetLost
from ..events import (CreateProcessInfo, DebugEvent, EventCode, ExceptionInfo, ExitProcessInfo, LoadDllInfo,
                      Module, UnloadDllInfo)
from ..symbols.modules import ModuleMap
from .arming import BreakpointSet
from .handlers import Handlers
from .hits import ExceptionDispatch
from .inspect import Inspector
from .process import Modules, ProcessState
from .records import Emit, Recorder
from .syscalls import SyscallDispatch

_EXCEPTION_EVENT = EventCode.EXCEPTION_DEBUG_EVENT
_SYSCALL_EVENT = EventCode.SYSCALL_EVENT


class Ending(enum.Enum):
    """How a session ended: the summary's `ended`."""

    EXITED = "exited"              # the target exited (or is still running: set again at cleanup)
    CRASHED = "crashed"            # ... after a fatal exception
    TIMEOUT = "timeout"            # --timeout / target.timeout passed
    STOPPED = "stopped"            # a `stop` action (a spawned target is then killed)
    DETACHED = "detached"          # a `detach` action, or an attached target let go
    KILLED = "killed"              # a `kill` action, or a spawned target killed at the end
    LOST = "lost"                  # the main process went without an exit status (RIP)
    INTERRUPTED = "interrupted"    # SIGINT / SIGTERM


# What an action's `end_session(how)` asks for (actions.flow: stop, detach, kill).
END_REQUESTS = {"stop": Ending.STOPPED, "detach": Ending.DETACHED, "kill": Ending.KILLED}


class Session:
    def __init__(self, plan: Plan, backend: Backend, emit: Emit, *,
                 all_events: bool = False, out_dir: str | Path = ".", inspector: Inspector | None = None,
                 module_map_factory: Callable[[], Modules] | None = None, attached: bool = False,
                 classify_crashes: bool = True) -> None:
        self.plan, self.backend = plan, backend
        self.params: Mapping[str, Any] = plan.params
        self.variables = plan.variables      # names may be DWARF variables (stop.StopEnv)
        self.out_dir = Path(out_dir)
        self.abi = backend.capabilities.abi
        self.inspector = inspector or Inspector()
        self.new_module_map: Callable[[], Modules] = module_map_factory or ModuleMap
        self.recorder = Recorder(emit)     # every record goes out through here
        self.processes: dict[int, ProcessState] = {}
        self.breakpoints = BreakpointSet(plan.breakpoints, self, self.processes, self.recorder,
                                         recipe_file=plan.recipe.file, attached=attached,
                                         patterns=plan.patterns)
        self.handlers = Handlers(plan.table, self, self.recorder, self.processes, self.new_module_map,
                                 all_events=all_events)
        self.exceptions = ExceptionDispatch(backend, self.processes, self.breakpoints, self.handlers,
                                            self.recorder, self.inspector, crash=plan.table.crash,
                                            classify=classify_crashes, rules=plan.rules, redispatch=self.dispatch)
        self.syscalls = SyscallDispatch(plan.table, self, self.recorder, self.processes)
        self.syscall_stops: dict[str, Any] | None = None    # how calls stopped (the summary's `syscalls`)
        # Dispatch by event code; exceptions (nearly every event: breakpoint hits) are
        # tested for first, in `dispatch` itself.
        self._on: dict[EventCode, Callable[[DebugEvent], None]] = {
            EventCode.CREATE_PROCESS_DEBUG_EVENT: self.on_create_process,
            EventCode.LOAD_DLL_DEBUG_EVENT: self.on_load_dll,
            EventCode.UNLOAD_DLL_DEBUG_EVENT: self.on_unload_dll,
            EventCode.EXIT_PROCESS_DEBUG_EVENT: self.on_exit_process,
            EventCode.RIP_EVENT: self.on_exit_process,
            EventCode.CREATE_THREAD_DEBUG_EVENT: self.on_create_thread,
        }
        self.end_request: Ending | None = None
        self.ended_how = Ending.EXITED
        self.exit_code: int | None = None
        self.exit_signal: str | None = None
        self.attached = attached
        self.main_pid: int | None = None
        self.started = False               # the first CREATE_PROCESS has arrived
        self.threads_started = False       # some target process started a second thread
        backend.patched_bytes = self.patched_bytes

    @property
    def crashed(self) -> bool:
        return self.exceptions.crashed

    @property
    def errors(self) -> list[str]:
        return self.recorder.errors

    @property
    def runs_on_at_hits(self) -> bool:
        """Every breakpoint is sampled: no hit stops the target. One CPU for tracer and
        target makes stops cheaper; without stops, two let the target run while the
        tracer writes records."""
        return bool(self.breakpoints) and all(bp.sampled for bp in self.breakpoints)

    # -- what stops ask of the session (stop.StopHost) ---------------------------------
    def request_end(self, how: str) -> None:
        self.end_request = END_REQUESTS[how]

    def set_enabled(self, bp_id: str, enabled: bool) -> None:
        self.breakpoints.set_enabled(bp_id, enabled)

    def output_path(self, name: str) -> Path:
        return self.plan.output_path(self.out_dir, name)

    # -- the loop -----------------------------------------------------------------
    def run_loop(self, timeout: float | None) -> None:
        # What start-up made (symbol tables, the plan, the modules) lives as long as the
        # session: out of the collector's sight, the full collections that hits' garbage
        # brings on walk only what came since (1.5-2.5 µs a sampled hit, measured). Given
        # back at the end, so that a process running session after session (triage's
        # workers) can still collect what an earlier one left.
        gc.freeze()
        try:
            self._loop(timeout)
        finally:
            gc.unfreeze()

    def _loop(self, timeout: float | None) -> None:
        deadline = None if timeout is None else self.recorder.start + timeout
        while self.processes or not self.started:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = self.backend.wait_event(remaining)
            if event is None:
                self.ended_how = Ending.TIMEOUT
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
                self.ended_how = self.end_request
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
        if event.code == _EXCEPTION_EVENT:
            return self.exceptions.on_exception(event)
        if event.code == _SYSCALL_EVENT:
            self.syscalls.on_syscall(event)       # its own section's handlers (not `events:`)
            return False
        handler = self._on.get(event.code)
        if handler is not None:
            handler(event)
        self.handlers.run_event_handlers(event)
        return False

    # -- processes and modules ------------------------------------------------------
    def on_create_process(self, event: DebugEvent) -> None:
        info: CreateProcessInfo = event.info  # type: ignore[assignment]
        if self.main_pid is None:
            self.main_pid = event.pid
        self.started = True
        modules = self.new_module_map()
        main = Module(info.image_path, info.image_base or 0)
        modules.add(main)
        self.breakpoints.expand_patterns(main, main=True)
        # An exec'd image (same pid) replaces everything: the old sites went with the old image.
        process = ProcessState(event.pid, self.backend, modules, image_path=info.image_path)
        parent = self.processes.get(info.parent_pid) if info.parent_pid is not None else None
        previous = self.processes.get(event.pid)
        process.threads = [event.pid]
        if parent is not None and previous is None:
            # A new fork child. The same pid again is an exec (in a followed child, its
            # parent_pid still names the parent): a fresh image, nothing to inherit.
            self.breakpoints.inherit_fork(parent, process)
            process.depth, process.parent_exe = parent.depth + 1, parent.image_path
            process.forked_without_exec = True
        elif previous is not None:       # an exec: same place in the tree, a new image
            process.depth, process.parent_exe = previous.depth, previous.parent_exe
        self.processes[event.pid] = process
        self.breakpoints.arm_all(process)

    def on_create_thread(self, event: DebugEvent) -> None:
        # A backend that pinned a single-threaded target to one CPU lets it go at its
        # second thread (backend/linux/decode.py): the summary then says not pinned.
        self.threads_started = True
        process = self.processes.get(event.pid)
        if process is not None and event.tid not in process.threads:
            process.threads.append(event.tid)

    def patched_bytes(self, pid: int) -> dict[int, bytes]:
        """The original bytes under every int3 we have in `pid` now (see Backend.patched_bytes)."""
        process = self.processes.get(pid)
        return {} if process is None else process.patched_bytes()

    def on_load_dll(self, event: DebugEvent) -> None:
        info: LoadDllInfo = event.info  # type: ignore[assignment]
        process = self.processes.get(event.pid)
        if process is None:
            return
        module = Module(info.path, info.base)
        process.modules.add(module)
        self.breakpoints.expand_patterns(module, main=False)
        self.breakpoints.arm_all(process)      # deferred breakpoints whose module or symbol just appeared

    def on_unload_dll(self, event: DebugEvent) -> None:
        info: UnloadDllInfo = event.info  # type: ignore[assignment]
        process = self.processes.get(event.pid)
        extent = process.modules.extent(info.base) if process is not None else None
        if process is None or extent is None:
            return
        process.modules.remove(info.base)
        self.breakpoints.forget_module(process, *extent)

    def on_exit_process(self, event: DebugEvent) -> None:
        process = self.processes.pop(event.pid, None)
        if process is not None:
            process.alive = False
        info: Any = event.info
        if event.pid == self.main_pid and isinstance(info, ExitProcessInfo):
            self.exit_code, self.exit_signal = info.exit_code, info.signal
        elif event.pid == self.main_pid:
            self.ended_how = Ending.LOST
            self.exit_signal = getattr(info, "signal", None)
