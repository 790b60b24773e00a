"""The Windows backend against real processes: runs inside a Windows CPython (wine or Windows).

The targets are tests/targets/win/*.c, built with mingw-w64 by .ci/wine.sh
into $INSTRUMENT_WIN_TARGETS. A tiny engine-like loop drives the backend the
way the engine does: it owns software breakpoints (0xCC, rip rewind, step
over, re-insert) and resumes every event.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from instrument.backend.base import SpawnOptions
from instrument.backend.windows import WindowsBackend
from instrument.events import Access, DebugEvent, EventCode, ExceptionCode
from instrument.symbols.pe import read_pe_file

TARGETS = Path(os.environ["INSTRUMENT_WIN_TARGETS"])
N = 5
EXPECTED_SUM = sum(i + 1 for i in range(N))   # hits.exe's exit code
# handler(backend, event) -> True to pass the exception to the target
Handler = Callable[[WindowsBackend, DebugEvent], bool]


def session(argv: list[str], handler: Handler | None = None, timeout: float = 60) -> list[DebugEvent]:
    backend = WindowsBackend()
    pid = backend.spawn(SpawnOptions(argv=tuple(argv), cwd=str(TARGETS)))
    events: list[DebugEvent] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ev = backend.wait_event(timeout=1.0)
            if ev is None:
                continue
            events.append(ev)
            pass_it = handler(backend, ev) if handler else ev.code == EventCode.EXCEPTION_DEBUG_EVENT
            backend.resume(ev.tid, pass_exception=pass_it)
            if ev.code == EventCode.EXIT_PROCESS_DEBUG_EVENT and ev.pid == pid:
                break
    finally:
        backend.close()
    return events


def hits(*args: str) -> list[str]:
    return [str(TARGETS / "hits.exe"), *args]


def exit_code(events: list[DebugEvent]) -> int:
    assert events[-1].code == EventCode.EXIT_PROCESS_DEBUG_EVENT
    return events[-1].info.exit_code


def is_hitlib(ev: DebugEvent) -> bool:
    return ev.code == EventCode.LOAD_DLL_DEBUG_EVENT and ev.info.path.lower().endswith("hitlib.dll")


def test_event_sequence_create_process_first_exit_process_last() -> None:
    events = session(hits(str(N)))
    codes = [e.code for e in events]
    assert codes[0] == EventCode.CREATE_PROCESS_DEBUG_EVENT
    assert codes[-1] == EventCode.EXIT_PROCESS_DEBUG_EVENT and exit_code(events) == EXPECTED_SUM
    assert events[0].info.image_path.lower().endswith("hits.exe") and events[0].info.image_base
    dlls = [e.info for e in events if e.code == EventCode.LOAD_DLL_DEBUG_EVENT]
    names = {Path(d.path.replace("\\", "/")).name.lower() for d in dlls}
    assert {"ntdll.dll", "kernel32.dll", "hitlib.dll"} <= names
    assert all(d.base for d in dlls)
    # The loader breakpoint is swallowed: no exception reaches a plain run.
    assert EventCode.EXCEPTION_DEBUG_EVENT not in codes


def test_debug_string_text() -> None:
    texts = [e.info.text for e in session(hits(str(N))) if e.code == EventCode.OUTPUT_DEBUG_STRING_EVENT]
    assert f"hits done: {N}" in texts


class SoftBreakpoint:
    """int3 on hitlib.dll!hit, stepped over on each hit, as the engine does it."""

    def __init__(self) -> None:
        self.address = 0
        self.original = b""
        self.hits = 0

    def __call__(self, backend: WindowsBackend, ev: DebugEvent) -> bool:
        if is_hitlib(ev):
            self.address = ev.info.base + read_pe_file(ev.info.path).export_rva("hit")
            self.original = backend.read_memory(ev.pid, self.address, 1)
            backend.write_memory(ev.pid, self.address, b"\xcc")
        elif ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            if ev.info.code != ExceptionCode.BREAKPOINT or ev.info.address != self.address:
                return True
            self.hits += 1
            regs = backend.registers(ev.tid)
            regs["rip"] = self.address
            backend.write_memory(ev.pid, self.address, self.original)
            step = backend.single_step(ev.tid)
            assert step.info.code == ExceptionCode.SINGLE_STEP and step.info.hw_slots == ()
            backend.write_memory(ev.pid, self.address, b"\xcc")
        return False


def test_int3_on_an_export_hits_exactly_n_times_with_step_over() -> None:
    bp = SoftBreakpoint()
    events = session(hits(str(N)), bp)
    assert bp.address and bp.hits == N
    assert exit_code(events) == EXPECTED_SUM      # every call still returned x + 1


def test_hardware_execute_breakpoint() -> None:
    state = {"address": 0, "hits": 0}

    def handler(backend: WindowsBackend, ev: DebugEvent) -> bool:
        if is_hitlib(ev):
            state["address"] = ev.info.base + read_pe_file(ev.info.path).export_rva("hit")
            backend.set_hardware_breakpoint(ev.pid, 0, state["address"], "execute", 1)
        elif ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            if ev.info.code == ExceptionCode.SINGLE_STEP and ev.info.hw_slots == (0,):
                assert ev.info.address == state["address"]
                state["hits"] += 1
                return False
            return True
        return False

    events = session(hits(str(N)), handler)
    assert state["hits"] == N and exit_code(events) == EXPECTED_SUM


def test_memory_breakpoint_reports_only_writes_to_the_watched_range() -> None:
    state = {"counter": 0, "writes": 0}

    def handler(backend: WindowsBackend, ev: DebugEvent) -> bool:
        if ev.code == EventCode.CREATE_PROCESS_DEBUG_EVENT:
            image = read_pe_file(ev.info.image_path)
            state["counter"] = ev.info.image_base + image.export_rva("counter")
            backend.set_memory_breakpoint(ev.pid, state["counter"], 4, "write")
        elif ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            if ev.info.code != ExceptionCode.GUARD_PAGE:
                return True
            assert (ev.info.fault_address, ev.info.access) == (state["counter"], Access.WRITE)
            state["writes"] += 1
        return False

    events = session(hits(str(N)), handler)
    assert state["writes"] == N and exit_code(events) == EXPECTED_SUM


def test_access_violation_first_and_second_chance() -> None:
    events = session([str(TARGETS / "crash.exe")])
    faults = [e.info for e in events if e.code == EventCode.EXCEPTION_DEBUG_EVENT]
    assert [(f.code, f.fault_address, f.access) for f in faults] == [
        (ExceptionCode.ACCESS_VIOLATION, 0x10, Access.WRITE)] * 2
    assert [f.first_chance for f in faults] == [True, False]
    assert exit_code(events) == ExceptionCode.ACCESS_VIOLATION
