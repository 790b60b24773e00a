"""A scripted backend for engine unit tests: a tiny pretend machine, no operating system.

The script is a list of steps. `("event", DebugEvent)` reports that event as
is. `("reach", tid, address, regs)` says thread `tid` arrives at `address`
with those registers: if the engine has an int3 there (memory byte 0xCC) the
fake reports a BREAKPOINT, exactly as a CPU would; otherwise nothing happens.
Memory is a sparse dict of bytes, so tests can check what the engine wrote.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, MutableMapping

from ..errors import DebuggerError
from ..arch.x86_64 import DEBUG_SLOTS, USER_REGS_FIELDS, Abi
from ..events import (CreateProcessInfo, DebugEvent, EventCode, ExceptionCode, ExceptionInfo,
                      ExitProcessInfo)
from .base import Capabilities, Module, SpawnOptions

FAKE_CAPABILITIES = Capabilities(os="linux", arch="x86_64", abi=Abi.SYSV, hardware_breakpoints=DEBUG_SLOTS,
                                 memory_breakpoints=True, follow_forks=True, attach=True, signals=True)


class FakeBackend:
    capabilities = FAKE_CAPABILITIES

    def __init__(self, script: list[tuple[Any, ...]], *, pid: int = 100, image: str = "/bin/fake",
                 memory: dict[int, int] | None = None) -> None:
        self.script = list(script)
        self.pid = pid
        self.image = image
        self.memory: dict[int, int] = dict(memory or {})
        self.regs: dict[int, dict[str, int]] = {}
        self.hw: dict[int, tuple[int, str, int]] = {}
        self.guards: dict[int, tuple[int, str]] = {}
        self.log: list[tuple[Any, ...]] = []          # what the engine asked, in order
        self.started = False
        self.closed = False
        self.detached: list[int] = []
        self.killed: list[int] = []
        self.patched_bytes: Callable[[int], Mapping[int, bytes]] | None = None
        # Signals that come before the instruction of the next single steps, one a step:
        # the step then reports the signal and rip stays (a signal pending at a step-over).
        self.step_signals: list[ExceptionInfo] = []

    # -- sessions --------------------------------------------------------
    def spawn(self, options: SpawnOptions) -> int:
        self.started = True
        self.script.insert(0, ("event", DebugEvent(EventCode.CREATE_PROCESS_DEBUG_EVENT, self.pid, self.pid,
                                                   CreateProcessInfo(self.image, 0))))
        return self.pid

    def attach(self, pid: int) -> int:
        self.pid = pid
        return self.spawn(SpawnOptions(argv=("attached",)))

    def detach(self, pid: int) -> None:
        self.detached.append(pid)

    def kill(self, pid: int) -> None:
        self.killed.append(pid)

    def close(self) -> None:
        self.closed = True

    # -- events ------------------------------------------------------------
    def wait_event(self, timeout: float | None = None) -> DebugEvent | None:
        while self.script:
            step = self.script.pop(0)
            if step[0] == "event":
                event: DebugEvent = step[1]
                return event
            if step[0] == "reach":
                _, tid, address, regs = step
                self.regs[tid] = {**dict.fromkeys(USER_REGS_FIELDS, 0), **regs, "rip": address + 1}
                if self.memory.get(address) == 0xCC:
                    return self._exception(tid, ExceptionCode.BREAKPOINT, address)
            elif step[0] == "timeout":
                return None
        return DebugEvent(EventCode.EXIT_PROCESS_DEBUG_EVENT, self.pid, self.pid, ExitProcessInfo(0))

    def _exception(self, tid: int, code: int, address: int, **kw: Any) -> DebugEvent:
        return DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, self.pid, tid, ExceptionInfo(code, address, **kw))

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        self.log.append(("resume", tid, pass_exception, self.regs.get(tid, {}).get("rip")))

    def single_step(self, tid: int) -> DebugEvent:
        rip = self.regs[tid]["rip"]
        self.log.append(("step", tid, rip, self.memory.get(rip)))
        if self.step_signals:
            return DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, self.pid, tid, self.step_signals.pop(0))
        self.regs[tid]["rip"] = rip + 1
        return self._exception(tid, ExceptionCode.SINGLE_STEP, rip + 1)

    # -- state -----------------------------------------------------------------
    def registers(self, tid: int) -> MutableMapping[str, int]:
        if tid not in self.regs:
            raise DebuggerError(f"thread {tid} is not stopped")
        return self.regs[tid]

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        try:
            return bytes(self.memory[a] for a in range(address, address + size))
        except KeyError:
            raise DebuggerError(f"cannot read memory at {address:#x}") from None

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        self.log.append(("write", address, bytes(data)))
        for i, b in enumerate(data):
            self.memory[address + i] = b

    def hold_others(self, tid: int) -> None:
        pass        # every thread already stands still while an event is handled

    def call_function(self, pid: int, address: int, *args: int) -> int:
        raise DebuggerError("this backend does not run calls in the target")

    def threads(self, pid: int) -> list[int]:
        return sorted(self.regs) or [pid]

    def modules(self, pid: int) -> list[Module]:
        return [Module(self.image, 0)]

    def command_line(self, pid: int) -> list[str] | None:
        return None         # not known to this backend

    def thread_name(self, pid: int, tid: int) -> str | None:
        return None

    def sample_code(self, pid: int, address: int) -> str | None:
        return "the fake backend does not sample soft breakpoints"   # capabilities.sampled_soft is False

    def unsample_code(self, pid: int, address: int) -> None:
        pass

    def take_samples(self) -> list[DebugEvent]:
        return []          # never samples: capabilities.sampled_registers is empty

    def sampling_problems(self) -> list[str]:
        return []

    def trace_syscalls(self, pid: int, numbers: frozenset[int], exits: frozenset[int]) -> None:
        raise DebuggerError("the fake backend has no system call stops")

    def skip_syscall(self, tid: int, retval: int) -> None:
        raise DebuggerError("the fake backend has no system call stops")

    def set_hardware_breakpoint(self, pid: int, slot: int, address: int, access: str, size: int, *,
                                sample: bool = False) -> None:
        self.hw[slot] = (address, access, size)

    def clear_hardware_breakpoint(self, pid: int, slot: int) -> None:
        self.hw.pop(slot, None)

    def set_memory_breakpoint(self, pid: int, address: int, size: int, access: str) -> None:
        self.guards[address] = (size, access)

    def clear_memory_breakpoint(self, pid: int, address: int) -> None:
        self.guards.pop(address, None)
