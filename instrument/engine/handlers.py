"""Running handlers: a handler's compiled actions at one stop, and the handler table's handlers for an event."""

from __future__ import annotations

from typing import Any, Callable, MutableMapping, Sequence

from ..actions import CompiledAction
from ..compiler.table import HandlerTable
from ..events import DebugEvent
from .process import Modules, ProcessState
from .records import Recorder, event_fields, record_fields
from .stop import Stop, StopEnv, StopHost


class Handlers:
    def __init__(self, table: HandlerTable, host: StopHost, recorder: Recorder,
                 processes: dict[int, ProcessState], new_module_map: Callable[[], Modules], *,
                 all_events: bool) -> None:
        self.table, self.host, self.recorder, self.processes = table, host, recorder, processes
        self.new_module_map = new_module_map
        self.all_events = all_events         # a record for every event, handled or not

    def run_actions(self, actions: Sequence[CompiledAction], process: ProcessState, tid: int,
                    regs: MutableMapping[str, int] | None, rec: dict[str, Any], fields: dict[str, Any],
                    hits: int = 0, entry_args: tuple[int, ...] | None = None) -> Stop:
        return Stop(StopEnv(self.host, process, tid, regs, fields, hits, entry_args), rec).run(actions)

    def run_event_handlers(self, event: DebugEvent, *, extra: dict[str, Any] | None = None,
                           regs: MutableMapping[str, int] | None = None) -> None:
        """The table's handlers for `event` (exception code, event code, catch-all), into
        one record of that event; with `all_events`, the record even without handlers."""
        handlers = self.table.lookup(event)
        if not handlers and not self.all_events:
            return
        fields = event_fields(event)
        if extra:
            fields.update(extra)
        rec = self.recorder.record(fields["event"], int(event.code), event.pid, event.tid, **record_fields(fields))
        fields.update(code=int(event.code), pid=event.pid, tid=event.tid)
        process = self.processes.get(event.pid) or self.ghost(event.pid)
        self.run_actions([a for h in handlers for a in h.actions], process, event.tid, regs, rec, fields)
        self.recorder.emit(rec)

    def ghost(self, pid: int) -> ProcessState:
        """A stand-in for a process that has already gone (its exit event's handlers)."""
        return ProcessState(pid, self.host.backend, self.new_module_map(), alive=False)
