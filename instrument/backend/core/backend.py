"""The core-file backend: a dumped process behind the same boundary as ptrace and kernel32, read-only.

`attach` replays the core as the live backend reports a process it attaches
to: CREATE_PROCESS, LOAD_DLL for each module, CREATE_THREAD for each other
thread; then the signal that dumped it, as a last-chance EXCEPTION of the
thread it belongs to, and EXIT_PROCESS by that signal. Registers come from
each thread's NT_PRSTATUS, memory from the core and the files it mapped.
Nothing runs and nothing changes: every write, breakpoint, step and call is
refused with a DebuggerError, and `capabilities.read_only` tells the
compiler so before a recipe ever asks.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable, Iterator, Mapping, MutableMapping

from ...errors import DebuggerError, TargetError
from ...events import (CreateProcessInfo, CreateThreadInfo, DebugEvent, EventCode, ExitProcessInfo,
                       LoadDllInfo)
from ...arch.x86_64 import Abi
from ..base import Capabilities, Module, SpawnOptions
from .elfcore import AT_ENTRY, CoreFile, open_core_file
from .memory import CoreMemory
from .modules import CoreModule, ModuleFinder
from .signals import ended_by, exception_for, signal_name

CORE_CAPABILITIES = Capabilities(os="linux", arch="x86_64", abi=Abi.SYSV, hardware_breakpoints=0,
                                 memory_breakpoints=False, follow_forks=False, attach=False,
                                 read_only=True)
READ_ONLY = "a core file is read-only"


class CoreRegisters(MutableMapping[str, int]):
    """A dumped thread's registers; assigning one is refused (`set:` cannot change a core)."""

    def __init__(self, values: Mapping[str, int]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def __setitem__(self, name: str, value: int) -> None:
        raise DebuggerError(f"{READ_ONLY}: cannot set register {name}")

    def __delitem__(self, name: str) -> None:
        raise DebuggerError(f"{READ_ONLY}: cannot delete register {name}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class CoreBackend:
    """One core file as a Backend (instrument/backend/base.py)."""

    capabilities = CORE_CAPABILITIES

    def __init__(self, core: CoreFile, exe: str | None = None) -> None:
        self.core = core
        self.exe = exe
        self.patched_bytes: Callable[[int], Mapping[int, bytes]] | None = None
        self.warnings: list[str] = []
        # The program's path in the core (the file mapped at its entry point): read from `exe`.
        entry = core.auxv.get(AT_ENTRY)
        self._main_file = next((f.path for f in core.files if entry is not None and f.start <= entry < f.end), None)
        self.memory = CoreMemory(core, self._path_for)
        finder = ModuleFinder(core, self.memory.read, self._read_dumped, exe)
        self.core_modules: list[CoreModule] = finder.modules()
        self._registers = {t.tid: CoreRegisters(t.registers) for t in core.threads}
        self._events: deque[DebugEvent] = deque()
        self._attached = False
        self._closed = False
        self._check_files()

    # -- what the core says ----------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.core.pid

    @property
    def program(self) -> str:
        """The program's path: --exe, else the file the core mapped at its entry point, else its comm."""
        if self.core_modules:
            return self.core_modules[0].path
        return self.exe or self.core.program_name or self.core.path

    # -- what a crash record's attribution asks (Backend.command_line, thread_name) ----
    def command_line(self, pid: int) -> list[str] | None:
        """argv as NT_PRPSINFO keeps it: pr_psargs, space-joined and cut at 80 characters
        by the kernel, so split on spaces (an argument with a space in it is split too)."""
        return self.core.arguments.split() or None if pid == self.core.pid else None

    def thread_name(self, pid: int, tid: int) -> str | None:
        """The comm of the process (pr_fname): the core has no per-thread names."""
        return self.core.program_name or None if pid == self.core.pid else None

    @property
    def build_id(self) -> str | None:
        """The build id of the program that dumped, from the core's own bytes."""
        return self.core_modules[0].build_id if self.core_modules else None

    def _path_for(self, path: str) -> str:
        return self.exe if self.exe and path == self._main_file else path

    def _read_dumped(self, address: int, size: int) -> bytes:
        return self.memory.read(address, size, dumped_only=True)

    def _check_files(self) -> None:
        """Warn about mapped files that are gone or not the build the process ran, and never
        read code from the latter: its disassembly and unwind tables would be another's."""
        from ...symbols.elf import ImageError, open_image

        for module in self.core_modules:
            if module.file is None:
                continue
            where = self._path_for(module.file)
            if not os.path.exists(where):
                hint = " (give the program with --exe)" if module is self.core_modules[0] else ""
                self.warnings.append(f"{where}, mapped when the core was written, is missing{hint}: "
                                     "its code is not in the core")
                continue
            if module.build_id is None:
                continue
            try:
                on_disk = open_image(where).build_id
            except ImageError:
                continue
            if on_disk is not None and on_disk != module.build_id:
                self.memory.refuse_file(module.file)
                self.warnings.append(f"{where} is not the file the process had mapped (build id {on_disk}, "
                                     f"the core's {module.build_id}): its code is not read")

    # -- sessions --------------------------------------------------------------------
    def spawn(self, options: SpawnOptions) -> int:
        raise TargetError(f"{self.core.path}: {READ_ONLY}: nothing can be started from it")

    def attach(self, pid: int) -> int:
        """Replay the dumped process `pid` (the core's own pid)."""
        if pid != self.core.pid:
            raise TargetError(f"{self.core.path} holds process {self.core.pid}, not {pid}")
        if self._attached:
            raise TargetError(f"{self.core.path}: already replayed")
        self._attached = True
        self._events.extend(self._replay())
        return pid

    def _replay(self) -> list[DebugEvent]:
        pid, core = self.core.pid, self.core
        main_tid = pid if pid in self._registers else core.threads[0].tid
        events: list[DebugEvent] = []
        if self.core_modules:
            main = self.core_modules[0]
            events.append(DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, pid, main_tid,
                                     CreateProcessInfo(main.path, main.base)))
            events += [DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, pid, main_tid, LoadDllInfo(m.path, m.base))
                       for m in self.core_modules[1:]]
        else:
            events.append(DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, pid, main_tid,
                                     CreateProcessInfo(self.program, None)))
        # In the order the core lists them: the kernel's is the reverse of creation after the
        # dumping thread, gdb's its own thread list; neither says which was created when.
        events += [DebugEvent(EventCode.CREATE_THREAD_DEBUG_EVENT, pid, t.tid, CreateThreadInfo())
                   for t in sorted(core.threads, key=lambda t: t.tid) if t.tid != main_tid]
        signal = None
        if core.siginfo is not None and ended_by(core.siginfo):
            crashed = core.threads[0]
            info = exception_for(core.siginfo, crashed.registers["rip"])
            events.append(DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, pid, crashed.tid, info))
            signal = signal_name(core.siginfo.signo)
        events.append(DebugEvent(EventCode.EXIT_PROCESS_DEBUG_EVENT, pid, main_tid, ExitProcessInfo(None, signal)))
        return events

    def detach(self, pid: int) -> None:
        self._events.clear()

    def kill(self, pid: int) -> None:
        self._events.clear()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._events.clear()
            self.memory.close()
            self.core.close()

    # -- the event loop ----------------------------------------------------------------
    def wait_event(self, timeout: float | None = None) -> DebugEvent | None:
        if not self._events:
            raise DebuggerError(f"{self.core.path}: the dumped process has no more events")
        return self._events.popleft()

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        pass          # nothing runs: the next event is the next thing the core says

    def hold_others(self, tid: int) -> None:
        pass          # every thread of a core stands still for good

    def single_step(self, tid: int) -> DebugEvent:
        raise DebuggerError(f"{READ_ONLY}: it cannot execute an instruction")

    def call_function(self, pid: int, address: int, *args: int) -> int:
        raise DebuggerError(f"{READ_ONLY}: it cannot run a function")

    # -- state -------------------------------------------------------------------------
    def registers(self, tid: int) -> MutableMapping[str, int]:
        try:
            return self._registers[tid]
        except KeyError:
            raise DebuggerError(f"thread {tid} is not in {self.core.path}") from None

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        return self.memory.read(address, size)

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        raise DebuggerError(f"{READ_ONLY}: cannot write {len(data)} bytes at {address:#x}")

    def threads(self, pid: int) -> list[int]:
        return [t.tid for t in self.core.threads]

    def modules(self, pid: int) -> list[Module]:
        return [Module(m.path, m.base) for m in self.core_modules]

    # -- breakpoints: none on a core -----------------------------------------------------
    def set_hardware_breakpoint(self, pid: int, slot: int, address: int, access: str, size: int, *,
                                sample: bool = False) -> None:
        raise DebuggerError(f"{READ_ONLY}: it takes no breakpoints")

    def clear_hardware_breakpoint(self, pid: int, slot: int) -> None:
        pass          # never set

    def set_memory_breakpoint(self, pid: int, address: int, size: int, access: str) -> None:
        raise DebuggerError(f"{READ_ONLY}: it takes no breakpoints")

    def clear_memory_breakpoint(self, pid: int, address: int) -> None:
        pass

    def sample_code(self, pid: int, address: int) -> str | None:
        return "a core file runs nothing: no breakpoint is sampled"

    def unsample_code(self, pid: int, address: int) -> None:
        pass

    def take_samples(self) -> list[DebugEvent]:
        return []

    def sampling_problems(self) -> list[str]:
        return []

    def trace_syscalls(self, pid: int, numbers: frozenset[int], exits: frozenset[int]) -> None:
        raise DebuggerError("a core file runs nothing: no system call stops")

    def skip_syscall(self, tid: int, retval: int) -> None:
        raise DebuggerError("a core file runs nothing: no system call stops")


def open_core(path: str, exe: str | None = None) -> CoreBackend:
    """A backend over the core file at `path`; `exe`: the program's file, where the core's path
    to it is gone or wrong. Raises TargetError (exit 3) for a file that is not a readable core."""
    core = open_core_file(path)
    try:
        return CoreBackend(core, exe)
    except BaseException:
        core.close()
        raise
