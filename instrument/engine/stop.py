"""One stop of one thread, as expressions and actions see it.

`StopEnv` is the `instrument.expr.Env` for a stop: registers, memory, ABI
argument aliases, `hits`, params, the event's fields and symbols. `Stop` is
the `ActionContext` the compiled actions of one handler run against, with
the record they fill in. Both reach the session only through `StopHost`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, MutableMapping, Protocol, Sequence

from ..arch import x86_64 as regdefs
from ..arch.x86_64 import Abi
from ..actions import CompiledAction
from ..backend.base import Backend
from ..errors import DebuggerError, EvaluationError, InstrumentError, RecipeError
from ..expr import Expr
from ..expr.values import CastType
from .inspect import Inspector

# The DWARF reader is imported where first used: most sessions never name a variable.
if TYPE_CHECKING:
    from ..symbols.dwarf_vars import FrameVariables, ModuleRef
from .process import ProcessState

MAX_CSTRING = 4096


class StopHost(Protocol):
    """What a stop needs of the session it happens in (engine.loop.Session)."""

    backend: Backend
    abi: Abi
    params: Mapping[str, Any]
    inspector: Inspector
    variables: bool           # the plan names DWARF variables (compiler.model.Plan.variables)

    def set_enabled(self, breakpoint_id: str, enabled: bool) -> None: ...
    def request_end(self, how: str) -> None: ...
    def output_path(self, name: str) -> Path: ...


class StopEnv:
    def __init__(self, host: StopHost, process: ProcessState, tid: int,
                 regs: MutableMapping[str, int] | None, fields: dict[str, Any],
                 hits: int = 0, entry_args: tuple[int, ...] | None = None, *, variables: bool = True) -> None:
        self.host, self.process, self.tid = host, process, tid
        # False: names are symbols only (an `at:` address; a recipe naming no variable: no DWARF read).
        self.variables = variables and host.variables
        self.regs, self.fields, self.hits, self.entry_args = regs, fields, hits, entry_args
        self._frame: FrameVariables | None = None

    def frame(self) -> FrameVariables:
        """The DWARF variables of the stopped frame, opened on first use (most stops never ask)."""
        if self._frame is None:
            from ..symbols.dwarf_vars import FrameVariables, ModuleRef
            modules = self.process.modules

            def find(address: int) -> ModuleRef | None:
                module = modules.find(address)
                return ModuleRef(module.path, module.base) if module is not None else None
            main = next(iter(modules), None)        # the first module added is the program
            search = [ModuleRef(main.path, main.base)] if main is not None else []
            self._frame = FrameVariables.from_names(self.regs, self.read_memory, find, search,
                                                    self.process.debug_info)
        return self._frame

    def type_named(self, name: str) -> CastType:
        found = self.frame().type_named(name)
        if found is None:
            raise EvaluationError(f"unknown type '{name}' (not a C base type nor in the debug information)")
        return found

    def register(self, name: str) -> int:
        if self.regs is None:
            raise EvaluationError(f"no registers at this event (asked for '{name}')")
        return regdefs.read_register(self.regs, name)

    def read_memory(self, address: int, size: int) -> bytes:
        try:
            return self.host.backend.read_memory(self.process.pid, address, size)
        except DebuggerError as e:
            raise EvaluationError(_saying(f"cannot read {size} bytes at {address:#x}", e)) from None

    def lookup(self, name: str) -> Any:
        if name.startswith("arg") and name[3:].isdigit() and len(name) == 4:
            index = int(name[3])
            if self.entry_args is not None and index < len(self.entry_args):
                return self.entry_args[index]
            if self.regs is None:
                raise EvaluationError(f"no registers at this event (asked for '{name}')")
            return regdefs.read_arg(self.host.abi, index, self.regs, self.read_memory)
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
        if name in self.host.params:
            return self.host.params[name]
        if self.variables and "!" not in name and ":" not in name:
            # A local or parameter in scope, then a global with a type; both shadow the
            # ELF symbol of the same name (a global stays its address as a number).
            variable = self.frame().lookup(name)
            if variable is not None:
                return variable
        try:
            return self.process.modules.resolve(name)
        except KeyError:
            if self.variables and self.regs is not None and "!" not in name:
                raise EvaluationError(f"unknown name '{name}': {self.frame().not_found()}") from None
            raise EvaluationError(f"unknown name '{name}'") from None


def condition_holds(when: Expr | None, env: StopEnv, warn_once: Callable[[str], None], what: str) -> bool:
    """Whether a handler's `when:` holds at this stop. A condition that cannot be
    evaluated here (unreadable memory, say) is false, and said once."""
    if when is None:
        return True
    try:
        return bool(when.evaluate(env))
    except EvaluationError as e:
        warn_once(f"{what}: {e}")
        return False


class Stop:
    """The ActionContext of instrument.actions.base, for one stop."""

    def __init__(self, env: StopEnv, record: dict[str, Any]) -> None:
        self.host, self.process, self.tid = env.host, env.process, env.tid
        self.env, self.record = env, record
        self.returned: int | None = None

    def run(self, actions: Sequence[CompiledAction]) -> Stop:
        """Run `actions` in order; one that fails leaves its error in the record's
        `errors` and the others still run."""
        for action in actions:
            try:
                action.run(self)
            except (EvaluationError, DebuggerError, InstrumentError, OSError, ValueError) as e:
                message = e.message if isinstance(e, RecipeError) else str(e)
                self.record.setdefault("errors", []).append(f"{action.kind}: {message}")
        return self

    @property
    def regs(self) -> MutableMapping[str, int]:
        if self.env.regs is None:
            raise EvaluationError("no registers at this event")
        return self.env.regs

    @regs.setter
    def regs(self, regs: MutableMapping[str, int]) -> None:
        self.env.regs = regs

    def read_memory(self, address: int, size: int) -> bytes:
        return self.env.read_memory(address, size)

    def write_memory(self, address: int, data: bytes) -> None:
        try:
            self.process.write(address, data)
        except DebuggerError as e:
            raise EvaluationError(_saying(f"cannot write {len(data)} bytes at {address:#x}", e)) from None

    def write_arg(self, index: int, value: int) -> None:
        regdefs.write_arg(self.host.abi, index, self.regs, value & regdefs.MASK64, self.write_memory)

    def backtrace(self, depth: int) -> list[dict[str, Any]]:
        return self.host.inspector.backtrace(self.process, self.regs, depth)

    def scope_names(self, params: bool) -> list[str]:
        return self.env.frame().names(params)

    def disassemble(self, address: int | None, count: int) -> list[dict[str, Any]]:
        return self.host.inspector.disassemble(self.process, self.regs["rip"] if address is None else address, count)

    def set_enabled(self, breakpoint_id: str, enabled: bool) -> None:
        self.host.set_enabled(breakpoint_id, enabled)

    def end_session(self, how: str) -> None:
        self.host.request_end(how)

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
        return self.host.output_path(name)


def _saying(what: str, error: DebuggerError) -> str:
    """`what` with the backend's reason, without saying `what` twice when the reason
    already starts with it ("cannot read 8 bytes at 0x0 in process 12")."""
    reason = str(error)
    return reason if reason.startswith(what) else f"{what}: {reason}"
