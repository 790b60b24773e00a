"""SYSCALL_EVENT dispatch: a named system call's entry and exit, its handlers, its record.

The handler table says which handlers a call number has (compiler/sections/syscalls.py).
Entry and exit are paired per thread: a thread is in one call at a time, so the
handlers chosen at a call's entry (`when` is evaluated there, the call counted
against `limit` there) are those whose exit actions run when that thread's next
exit of the same call comes. A handler with `on: exit` decides at the exit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, MutableMapping

from ..arch.x86_64 import MASK64
from ..compiler.table import HandlerTable, SyscallHandler
from ..errors import DebuggerError
from ..events import DebugEvent, EventCode, SyscallInfo
from .process import ProcessState
from .records import Recorder
from .stop import Stop, StopEnv, StopHost, condition_holds

if TYPE_CHECKING:
    from ..arch.x86_64.syscalls import Syscall

# The table and decoder are imported when a session first has a system call to handle:
# compiling a 360-call table costs start-up that recipes without `syscalls:` never need.
_CODE = int(EventCode.SYSCALL_EVENT)


def _sysdecode() -> Any:
    from ..arch.x86_64 import sysdecode
    return sysdecode


def _table() -> dict[int, Syscall]:
    from ..arch.x86_64.syscalls import BY_NUMBER
    return BY_NUMBER


class SyscallEnv(StopEnv):
    """A stop's names, plus the call's: arguments by name and arg0..arg5 in the system call
    ABI (as the entry had them), retval signed, errno a number (0: it succeeded). An
    argument named like a register (`flags`, which is also eflags) means the argument."""

    arg_names: frozenset[str] = frozenset()

    def register(self, name: str) -> int:
        if name in self.arg_names:
            return int(self.fields[name])
        return super().register(name)

    def lookup(self, name: str) -> Any:
        if name == "retval" and "retval" in self.fields:
            return self.fields["retval"]
        return super().lookup(name)


class SyscallStop(Stop):
    """Actions at a system call stop: `return:` skips the call at its entry (or changes its
    result at exit); argN are written to the system call's argument registers."""

    def __init__(self, env: SyscallEnv, record: dict[str, Any], entry: bool) -> None:
        super().__init__(env, record)
        self.entry = entry

    def write_arg(self, index: int, value: int) -> None:
        self.regs[_sysdecode().ARG_REGISTERS[index]] = value & MASK64

    def force_return(self, value: int) -> None:
        if self.entry:
            self.host.backend.skip_syscall(self.tid, value)
            self.record["skipped"] = True
        else:
            self.regs["rax"] = value & MASK64
        self.returned = _sysdecode().signed(value)
        self.record["returned"] = self.returned


class SyscallDispatch:
    def __init__(self, table: HandlerTable, host: StopHost, recorder: Recorder,
                 processes: dict[int, ProcessState]) -> None:
        self.table, self.host, self.recorder, self.processes = table, host, recorder, processes
        self.counts: dict[int, int] = {}                      # handler index -> calls handled
        self.pending: dict[int, tuple[int, list[SyscallHandler]]] = {}   # tid -> its call's exit handlers

    def on_syscall(self, event: DebugEvent) -> None:
        info: SyscallInfo = event.info  # type: ignore[assignment]
        handlers = self.table.syscalls.get(info.number)
        process = self.processes.get(event.pid)
        if not handlers or process is None:
            return
        call = _table()[info.number]
        if info.entry:
            self._entry(process, event, call, info, handlers)
        else:
            self._exit(process, event, call, info, handlers)

    def _entry(self, process: ProcessState, event: DebugEvent, call: Syscall, info: SyscallInfo,
               handlers: tuple[SyscallHandler, ...]) -> None:
        fields, rec = self._record(process, event, call, info)
        stop = self._stop(process, event, fields, rec, info)
        ran = False
        later: list[SyscallHandler] = []
        for h in handlers:
            if h.on == "exit":
                later.append(h)          # decides at the exit
                continue
            if not self._take(h, stop):
                continue
            ran = True
            stop.run(h.actions)
            if h.on == "both":
                later.append(h)
        if later:
            self.pending[event.tid] = (info.number, later)
        else:
            self.pending.pop(event.tid, None)
        if ran:
            self.recorder.emit(rec)

    def _exit(self, process: ProcessState, event: DebugEvent, call: Syscall, info: SyscallInfo,
              handlers: tuple[SyscallHandler, ...]) -> None:
        number, chosen = self.pending.pop(event.tid, (None, None))
        if number != info.number or chosen is None:
            # No entry seen (attached inside the call; a new thread returning from clone):
            # every handler decides at the exit.
            chosen = [h for h in handlers if h.on != "entry"]
            paired: set[int] = set()
        else:
            paired = {h.index for h in chosen if h.on == "both"}
        fields, rec = self._record(process, event, call, info)
        stop = self._stop(process, event, fields, rec, info)
        ran = False
        for h in chosen:
            if h.index not in paired and not self._take(h, stop):
                continue
            ran = True
            stop.run(h.actions)
        if ran:
            self.recorder.emit(rec)

    def _take(self, h: SyscallHandler, stop: SyscallStop) -> bool:
        """Whether `h` handles this call (its limit not reached, its condition true), counted."""
        count = self.counts.get(h.index, 0)
        if h.limit is not None and count >= h.limit:
            return False
        if not condition_holds(h.when, stop.env, self.recorder.warn_once, f"syscalls: {h.key}: when"):
            return False
        self.counts[h.index] = count + 1
        return True

    def _record(self, process: ProcessState, event: DebugEvent, call: Syscall,
                info: SyscallInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        sysdecode = _sysdecode()
        decoder = sysdecode.Decoder(process.read)
        args = decoder.args(call, info.args, exiting=not info.entry, retval=info.retval)
        fields: dict[str, Any] = {"sysno": info.number, "syscall": call.name, "name": call.name,
                                  "phase": "entry" if info.entry else "exit"}
        fields.update({a.name: info.args[i] for i, a in enumerate(call.args)})
        rec = self.recorder.record("syscall", _CODE, event.pid, event.tid, name=call.name, sysno=info.number,
                                   phase=fields["phase"], args=args)
        if info.retval is not None:
            err = sysdecode.failed(info.retval)
            fields["retval"] = info.retval
            fields["errno"] = err or 0
            rec["retval"] = info.retval
            rec["result"] = sysdecode.result_text(call, info.retval)
            if err is not None:
                rec["errno"] = sysdecode.errno_name(err)
        return fields, rec

    def _stop(self, process: ProcessState, event: DebugEvent, fields: dict[str, Any], rec: dict[str, Any],
              info: SyscallInfo) -> SyscallStop:
        regs: MutableMapping[str, int] | None
        try:
            regs = self.host.backend.registers(event.tid)
        except DebuggerError:
            regs = None
        fields.update(code=_CODE, pid=event.pid, tid=event.tid)
        env = SyscallEnv(self.host, process, event.tid, regs, fields, 0, info.args)
        env.arg_names = _table()[info.number].arg_names
        return SyscallStop(env, rec, info.entry)
