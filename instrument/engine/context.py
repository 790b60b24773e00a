"""One stop of one thread, as expressions and actions see it.

`StopEnv` is the `instrument.expr.Env` for a stop: registers, memory, ABI
argument aliases, `hits`, params, the event's fields and symbols.
`StopContext` is the `ActionContext` the compiled actions run against.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, MutableMapping

from ..arch import x86_64 as regdefs
from ..errors import DebuggerError, EvaluationError

if TYPE_CHECKING:
    from .loop import ProcessState, Session

MAX_CSTRING = 4096


class StopEnv:
    def __init__(self, session: Session, process: ProcessState, tid: int,
                 regs: MutableMapping[str, int] | None, fields: dict[str, Any],
                 hits: int = 0, entry_args: tuple[int, ...] | None = None) -> None:
        self.session, self.process, self.tid = session, process, tid
        self.regs, self.fields, self.hits, self.entry_args = regs, fields, hits, entry_args

    def register(self, name: str) -> int:
        if self.regs is None:
            raise EvaluationError(f"no registers at this event (asked for '{name}')")
        return regdefs.read_register(self.regs, name)

    def read_memory(self, address: int, size: int) -> bytes:
        try:
            return self.session.backend.read_memory(self.process.pid, address, size)
        except DebuggerError as e:
            raise EvaluationError(_saying(f"cannot read {size} bytes at {address:#x}", e)) from None

    def lookup(self, name: str) -> Any:
        if name.startswith("arg") and name[3:].isdigit() and len(name) == 4:
            index = int(name[3])
            if self.entry_args is not None and index < len(self.entry_args):
                return self.entry_args[index]
            if self.regs is None:
                raise EvaluationError(f"no registers at this event (asked for '{name}')")
            return regdefs.read_arg(self.session.abi, index, self.regs, self.read_memory)
        if name == "retval":
            return self.register("rax")
        if name == "hits":
            return self.hits
        if name in self.fields:
            return self.fields[name]
        if name == "pid":          # every stop has these, whatever its fields
            return self.process.pid
        if name == "tid":
            return self.tid
        if name in self.session.plan.params:
            return self.session.plan.params[name]
        try:
            return self.process.modules.resolve(name)
        except KeyError:
            raise EvaluationError(f"unknown name '{name}'") from None


class StopContext:
    """The ActionContext of instrument.actions.base, for one stop."""

    def __init__(self, session: Session, process: ProcessState, tid: int,
                 env: StopEnv, record: dict[str, Any]) -> None:
        self.session, self.process, self.tid, self.env, self.record = session, process, tid, env, record
        self.returned: int | None = None

    @property
    def regs(self) -> MutableMapping[str, int]:
        if self.env.regs is None:
            raise EvaluationError("no registers at this event")
        return self.env.regs

    def read_memory(self, address: int, size: int) -> bytes:
        return self.env.read_memory(address, size)

    def write_memory(self, address: int, data: bytes) -> None:
        try:
            self.process.write(address, data)
        except DebuggerError as e:
            raise EvaluationError(_saying(f"cannot write {len(data)} bytes at {address:#x}", e)) from None

    def write_arg(self, index: int, value: int) -> None:
        regdefs.write_arg(self.session.abi, index, self.regs, value & regdefs.MASK64, self.write_memory)

    def backtrace(self, depth: int) -> list[dict[str, Any]]:
        return self.session.inspector.backtrace(self.process, self.regs, depth)

    def disassemble(self, address: int | None, count: int) -> list[dict[str, Any]]:
        return self.session.inspector.disassemble(self.process, self.regs["rip"] if address is None else address, count)

    def set_enabled(self, breakpoint_id: str, enabled: bool) -> None:
        self.session.set_enabled(breakpoint_id, enabled)

    def end_session(self, how: str) -> None:
        self.session.request_end(how)

    def force_return(self, value: int) -> None:
        """Return from the current function now: rax = value, pop the return address.

        Only meaningful at a function's entry, where [rsp] is the return address."""
        regs = self.regs
        ret = int.from_bytes(self.read_memory(regs["rsp"], 8), "little")
        regs["rax"] = value
        regs["rip"] = ret
        regs["rsp"] = regs["rsp"] + 8
        self.returned = value

    def output_path(self, name: str) -> Path:
        from ..recipe.checks import resolve_output_path
        return resolve_output_path(self.session.out_dir, name)


def _saying(what: str, error: DebuggerError) -> str:
    """`what` with the backend's reason, without saying `what` twice when the reason
    already starts with it ("cannot read 8 bytes at 0x0 in process 12")."""
    reason = str(error)
    return reason if reason.startswith(what) else f"{what}: {reason}"
