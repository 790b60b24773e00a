"""Records: where they go (Recorder), and the fields an event contributes to one (values, not
presentation: hex strings per SPEC 5)."""

from __future__ import annotations

import time
from typing import Any, Callable

from ..events import (CreateProcessInfo, CreateThreadInfo, DebugEvent, DebugStringInfo, EventCode, ExceptionInfo,
                      ExitProcessInfo, ExitThreadInfo, LoadDllInfo, RipInfo, UnloadDllInfo, exception_name)


_EXCEPTION = int(EventCode.EXCEPTION_DEBUG_EVENT)     # a hit record's code
ADDRESS_KEYS = frozenset({"address", "fault_address", "base", "start_address", "pc", "exception_code"})

Emit = Callable[[dict[str, Any]], None]


class Recorder:
    """Every record of a session goes out through `emit`, stamped with its time since the
    session started (to the microsecond: round(x * 1e6) / 1e6, five times cheaper than
    round(x, 6), which rounds the exact decimal value and so differs about once in a
    million, in the last digit); problems with the recipe met at run time are kept, once each, for
    the summary's `errors` (SPEC 5 has no record of its own for them)."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.start = time.monotonic()
        self.errors: list[str] = []

    def record(self, event: str, code: int | None, pid: int, tid: int, *, at: float | None = None,
               **fields: Any) -> dict[str, Any]:
        """A record of something that happened `at` (time.monotonic(); default: now)."""
        return {"event": event, "code": code, "pid": pid, "tid": tid,
                "time": round(((time.monotonic() if at is None else at) - self.start) * 1e6) / 1e6, **fields}

    def hit_record(self, pid: int, tid: int, at: float | None, bp_id: str, bp_type: str, hits: int,
                   address: int, symbol: str) -> dict[str, Any]:
        """record("breakpoint", ...) of a breakpoint hit, field for field in the same order,
        as one dict display: no keyword dict to build and merge on every hit."""
        return {"event": "breakpoint", "code": _EXCEPTION, "pid": pid, "tid": tid,
                "time": round(((time.monotonic() if at is None else at) - self.start) * 1e6) / 1e6,
                "id": bp_id, "type": bp_type, "hits": hits, "address": hex(address), "symbol": symbol}

    def warn_once(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)


def record_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Event fields as a record carries them: addresses as lower-case hex strings (SPEC 5)."""
    return {k: (hex(v) if k in ADDRESS_KEYS and isinstance(v, int) and not isinstance(v, bool) else v)
            for k, v in fields.items() if k != "event"}


def event_fields(event: DebugEvent) -> dict[str, Any]:
    """`event` (the record name) and the payload of one debug event, as values
    (ints stay ints, so a recipe can write `{base:#x}`)."""
    info = event.info
    fields: dict[str, Any] = {"event": event.code.record_name}
    if isinstance(info, ExceptionInfo):
        fields.update(exception=exception_name(info.code), exception_code=info.code,
                      address=info.address, first_chance=info.first_chance)
        if info.signal:
            fields["signal"] = info.signal
        if info.fault_address is not None:
            fields["fault_address"] = info.fault_address
        if info.access is not None:
            fields["access"] = info.access.value
    elif isinstance(info, CreateProcessInfo):
        fields.update(image_path=info.image_path, module=info.image_path, base=info.image_base)
    elif isinstance(info, CreateThreadInfo):
        fields["start_address"] = info.start_address
    elif isinstance(info, ExitThreadInfo):
        fields["exit_code"] = info.exit_code
    elif isinstance(info, ExitProcessInfo):
        fields["exit_code"] = info.exit_code
        if info.signal:
            fields["signal"] = info.signal
    elif isinstance(info, (LoadDllInfo, UnloadDllInfo)):
        fields.update(module=info.path, base=info.base)
    elif isinstance(info, DebugStringInfo):
        fields["text"] = info.text
    elif isinstance(info, RipInfo):
        fields["error"] = info.error
        if info.signal:
            fields["signal"] = info.signal
    return fields
