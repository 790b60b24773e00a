"""Replay recorded Windows debug events through decode_event and through WindowsBackend.

data/raw_events_int3_x64.hex holds the 176-byte DEBUG_EVENTs WaitForDebugEvent
returned under wine 8.0 while a C debugger launched a program, put an int3 at
0x1400015ce, and stepped over it three times. `ScriptedKernel32` feeds them
(and synthetic ones) to the real backend in place of kernel32 and checks the
debugging protocol as Windows enforces it: one event at a time, each continued
with the pid and tid it came with, contexts only set while the thread is stopped.
"""

from __future__ import annotations

import ctypes
import dataclasses
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from instrument.arch.x86_64 import DR6_SINGLE_STEP, RESUME_FLAG, TRAP_FLAG, Abi
from instrument.backend.base import SpawnOptions
from instrument.backend.fake import FAKE_CAPABILITIES, FakeBackend
from instrument.backend.windows import _ffi
from instrument.backend.windows.debuggee import WindowsBackend
from instrument.backend.windows.decode import decode_event, read_cstring
from instrument.errors import DebuggerError, TargetError
from instrument.compiler.plan import compile_plan
from instrument.engine.session import run
from instrument.events import Access, DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from instrument.recipe.load import load_recipe

S = _ffi.STRUCTS64
RAW = [bytes.fromhex(line) for line in
       (Path(__file__).parent / "data" / "raw_events_int3_x64.hex").read_text().split()]
PID, MAIN_TID, WORKER_TID = 272, 276, 280
LOADER_BP, INT3 = 0x1700555F4, 0x1400015CE
NAME_SLOT = 0x67FE0028            # wine writes every DLL name pointer here
NAME_BUFFER = 0x67FE1000
DLLS = {0x170000000: r"C:\windows\system32\ntdll.dll", 0x7B600000: r"C:\windows\system32\kernel32.dll",
        0x7B000000: r"C:\windows\system32\kernelbase.dll", 0x228280000: r"C:\windows\system32\msvcrt.dll",
        0x10000000: r"C:\windows\system32\tzres.dll", 0x25DC30000: r"C:\windows\system32\late1.dll",
        0x2C7470000: r"C:\windows\system32\late2.dll"}
MAIN_IMAGE = r"C:\t\int3_target.exe"


# -- decode_event alone ---------------------------------------------------------
def test_every_recorded_event_decodes_in_order() -> None:
    events = [decode_event(raw, None, S) for raw in RAW]
    assert [int(e.code) for e in events] == [3, 6, 6, 6, 6, 6, 7, 6, 7, 1, 8, 1, 1, 1, 1, 1, 1,
                                             2, 8, 4, 6, 6, 7, 7, 5]
    assert {e.pid for e in events} == {PID}
    assert [e.tid for e in events] == [MAIN_TID] * 17 + [WORKER_TID] * 3 + [MAIN_TID] * 5
    exceptions = [e.info for e in events if e.code == EventCode.EXCEPTION_DEBUG_EVENT]
    assert [(x.code, x.address) for x in exceptions] == [
        (ExceptionCode.BREAKPOINT, LOADER_BP)] + [
        (ExceptionCode.BREAKPOINT, INT3), (ExceptionCode.SINGLE_STEP, INT3 + 1)] * 3
    assert all(x.first_chance and x.fault_address is None and x.hw_slots == () for x in exceptions)


def test_recorded_payloads() -> None:
    events = [decode_event(raw, None, S) for raw in RAW]
    assert events[0].info.image_base == 0x140000000
    assert [e.info.base for e in events if e.code == EventCode.LOAD_DLL_DEBUG_EVENT] == [
        0x170000000, 0x7B600000, 0x7B000000, 0x228280000, 0x10000000, 0x10000000,
        0x25DC30000, 0x2C7470000]
    assert events[17].info.start_address == 0x1400015DF
    assert events[19].info.exit_code == 0
    assert events[24].info.exit_code == 7


class _Memory:
    """A TargetView over a dict of regions."""

    def __init__(self, regions: dict[int, bytes], dr6: int = 0) -> None:
        self.regions, self._dr6 = regions, dr6

    def read(self, pid: int, address: int, size: int) -> bytes | None:
        for start, data in self.regions.items():
            if start <= address and address + size <= start + len(data):
                return data[address - start:address - start + size]
        return None

    def handle_path(self, handle: int) -> str | None:
        return "\\\\?\\" + MAIN_IMAGE if handle == 0x70 else None

    def dr6(self, pid: int, tid: int) -> int:
        return self._dr6


def test_names_strings_and_dr6_come_through_the_view() -> None:
    view = _Memory({NAME_SLOT: NAME_BUFFER.to_bytes(8, "little"),
                    NAME_BUFFER: DLLS[0x170000000].encode("utf-16-le").ljust(0x1000, b"\0"),
                    0x140009000: b"hello from the worker\n\0\0\0"}, dr6=0b0101)
    assert decode_event(RAW[0], view, S).info.image_path == MAIN_IMAGE   # lpImageName NULL: hFile
    assert decode_event(RAW[1], view, S).info.path == DLLS[0x170000000]
    assert decode_event(RAW[18], view, S).info.text == "hello from the worker\n"
    assert decode_event(RAW[12], view, S).info.hw_slots == (0, 2)


def test_cstring_reads_stop_at_page_boundaries() -> None:
    # A name ending 3 bytes before an unmapped page: one big read would fail.
    view = _Memory({0x1FF0: b"x" * 13 + b"\0\0\0"})
    assert read_cstring(view, PID, 0x1FF0, wide=False) == "x" * 13


def _synthetic(code: int, pid: int = PID, tid: int = MAIN_TID, **fields: Any) -> bytes:
    de = S.DEBUG_EVENT(dwDebugEventCode=code, dwProcessId=pid, dwThreadId=tid)
    if code == EventCode.EXCEPTION_DEBUG_EVENT:
        rec = de.u.Exception.ExceptionRecord
        rec.ExceptionCode, rec.ExceptionAddress = fields["exc"], fields.get("address", 0x401000)
        params = fields.get("params", ())
        rec.NumberParameters = len(params)
        for i, p in enumerate(params):
            rec.ExceptionInformation[i] = p
        de.u.Exception.dwFirstChance = fields.get("first_chance", 1)
    elif code == EventCode.CREATE_THREAD_DEBUG_EVENT:
        de.u.CreateThread.hThread = fields["handle"]
        de.u.CreateThread.lpStartAddress = 0x401500
    elif code == EventCode.EXIT_PROCESS_DEBUG_EVENT:
        de.u.ExitProcess.dwExitCode = fields.get("exit_code", 0)
    return bytes(de)


@pytest.mark.parametrize("flag, access", [(0, Access.READ), (1, Access.WRITE), (8, Access.EXECUTE)])
def test_access_violation_access_kinds(flag: int, access: Access) -> None:
    ev = decode_event(_synthetic(1, exc=ExceptionCode.ACCESS_VIOLATION, address=0x401234,
                                 params=(flag, 0xDEAD0), first_chance=0), None, S)
    assert (ev.info.code, ev.info.address, ev.info.fault_address, ev.info.access,
            ev.info.first_chance) == (ExceptionCode.ACCESS_VIOLATION, 0x401234, 0xDEAD0, access, False)


def test_wow64_codes_map_to_breakpoint_and_single_step() -> None:
    assert decode_event(_synthetic(1, exc=_ffi.STATUS_WX86_BREAKPOINT), None, S).info.code == ExceptionCode.BREAKPOINT
    assert decode_event(_synthetic(1, exc=_ffi.STATUS_WX86_SINGLE_STEP), None, S).info.code == ExceptionCode.SINGLE_STEP


def test_unknown_event_code_is_a_debugger_error() -> None:
    with pytest.raises(DebuggerError):
        decode_event(_synthetic(42), None, S)


# -- a scripted kernel32 -------------------------------------------------------------
class ScriptedKernel32:
    """Serves scripted DEBUG_EVENTs and a small process model; asserts the protocol."""

    def __init__(self, script: list[tuple[bytes, dict[int, bytes]]]) -> None:
        self.script = deque(script)
        self.pending: tuple[int, int] | None = None
        self.memory: dict[int, bytes] = {}
        self.contexts: dict[int, Any] = {}        # thread handle -> CONTEXT
        self.thread_of: dict[int, int] = {}       # tid -> thread handle
        self.suspended: dict[int, int] = {}
        self.protections: dict[int, int] = {}
        self.log: list[tuple[Any, ...]] = []

    def _fail(self, name: str, code: int) -> None:
        raise _ffi.Win32Error(name, code)

    def WaitForDebugEvent(self, event: Any, ms: int) -> int:
        assert self.pending is None, "WaitForDebugEvent while an event is not continued"
        if not self.script:
            self._fail("WaitForDebugEvent", _ffi.ERROR_SEM_TIMEOUT)
        raw, memory = self.script.popleft()
        self.memory.update(memory)
        ctypes.memmove(ctypes.addressof(event), raw, len(raw))
        self.pending = (event.dwProcessId, event.dwThreadId)
        self._model(event)
        return 1

    def _model(self, de: Any) -> None:
        """What the kernel does to the thread's context when it reports the event."""
        if de.dwDebugEventCode == EventCode.CREATE_PROCESS_DEBUG_EVENT:
            self.thread_of[de.dwThreadId] = de.u.CreateProcessInfo.hThread
        elif de.dwDebugEventCode == EventCode.CREATE_THREAD_DEBUG_EVENT:
            self.thread_of[de.dwThreadId] = de.u.CreateThread.hThread
        elif de.dwDebugEventCode == EventCode.EXCEPTION_DEBUG_EVENT:
            ctx = self._ctx(self.thread_of[de.dwThreadId])
            rec = de.u.Exception.ExceptionRecord
            if rec.ExceptionCode == ExceptionCode.BREAKPOINT:
                ctx.Rip = rec.ExceptionAddress + 1          # the CPU is past the int3
            elif rec.ExceptionCode == ExceptionCode.SINGLE_STEP:
                ctx.Rip = rec.ExceptionAddress
                ctx.Dr6 = ctx.Dr6 or DR6_SINGLE_STEP
            else:
                ctx.Rip = rec.ExceptionAddress

    def _ctx(self, handle: int) -> Any:
        return self.contexts.setdefault(handle, S.CONTEXT())

    def ContinueDebugEvent(self, pid: int, tid: int, status: int) -> int:
        assert self.pending == (pid, tid), f"continued {(pid, tid)}, holding {self.pending}"
        self.pending = None
        self.log.append(("continue", tid, status))
        return 1

    def GetThreadContext(self, handle: int, ctx: Any) -> int:
        assert self.pending is not None or self.suspended.get(handle), "context of a running thread"
        ctypes.memmove(ctypes.addressof(ctx), ctypes.addressof(self._ctx(handle)), ctypes.sizeof(ctx))
        return 1

    def SetThreadContext(self, handle: int, ctx: Any) -> int:
        assert self.pending is not None or self.suspended.get(handle), "context of a running thread"
        ctypes.memmove(ctypes.addressof(self._ctx(handle)), ctypes.addressof(ctx), ctypes.sizeof(ctx))
        self.log.append(("set_context", handle, ctx.Rip, ctx.EFlags, ctx.Dr0, ctx.Dr6, ctx.Dr7))
        return 1

    def ReadProcessMemory(self, h: int, address: int, buf: Any, size: int, done: Any) -> int:
        for start, data in self.memory.items():
            if start <= address and address + size <= start + len(data):
                ctypes.memmove(buf, data[address - start:address - start + size], size)
                done.value = size
                return 1
        self._fail("ReadProcessMemory", _ffi.ERROR_PARTIAL_COPY)
        return 0

    def WriteProcessMemory(self, h: int, address: int, buf: Any, size: int, done: Any) -> int:
        self.memory[address] = bytes(buf)
        done.value = size
        return 1

    def VirtualQueryEx(self, h: int, address: int, mbi: Any, size: int) -> int:
        mbi.BaseAddress, mbi.Protect = address, self.protections.get(address, _ffi.PAGE_READWRITE)
        return size

    def VirtualProtectEx(self, h: int, address: int, size: int, new: int, old: Any) -> int:
        old.value = self.protections.get(address, _ffi.PAGE_READWRITE)
        self.protections[address] = new
        self.log.append(("protect", address, new))
        return 1

    def GetFinalPathNameByHandleW(self, handle: int, buf: Any, size: int, flags: int) -> int:
        if handle != 0x70:
            self._fail("GetFinalPathNameByHandleW", _ffi.ERROR_INVALID_HANDLE)
        buf.value = "\\\\?\\" + MAIN_IMAGE
        return len(buf.value)

    def SuspendThread(self, handle: int) -> int:
        self.suspended[handle] = self.suspended.get(handle, 0) + 1
        return self.suspended[handle] - 1

    def ResumeThread(self, handle: int) -> int:
        self.suspended[handle] -= 1
        return self.suspended[handle] + 1

    def CreateProcessW(self, app: Any, cmdline: Any, pa: Any, ta: Any, inherit: bool, flags: int,
                       env: Any, cwd: Any, si: Any, pi: Any) -> int:
        self.log.append(("create", cmdline.value, flags, si.dwFlags))
        pi.hProcess, pi.hThread, pi.dwProcessId, pi.dwThreadId = 0x900, 0x904, PID, MAIN_TID
        return 1

    def CloseHandle(self, handle: int) -> int:
        self.log.append(("close", handle))
        return 1

    def IsWow64Process(self, h: int, flag: Any) -> int:
        flag.value = 0
        return 1

    def GetStdHandle(self, which: int) -> int:
        return {_ffi.STD_INPUT_HANDLE: 0x10, _ffi.STD_OUTPUT_HANDLE: 0x14, _ffi.STD_ERROR_HANDLE: 0x18}[which]

    def GetCurrentProcess(self) -> int:
        return 0xFFFFFFFFFFFFFFFF

    def DuplicateHandle(self, sp: int, source: int, tp: int, target: Any, access: int, inherit: bool,
                        options: int) -> int:
        target.value = source + 0x1000
        return 1

    def FlushInstructionCache(self, h: int, address: int, size: int) -> int:
        return 1

    def TerminateProcess(self, h: int, code: int) -> int:
        self.log.append(("terminate", h))
        return 1


def _recorded_script() -> list[tuple[bytes, dict[int, bytes]]]:
    """The recording plus what wine had in the debuggee's memory at each event."""
    script = []
    for raw in RAW:
        de = S.DEBUG_EVENT.from_buffer_copy(raw)
        memory: dict[int, bytes] = {}
        if de.dwDebugEventCode == EventCode.LOAD_DLL_DEBUG_EVENT:
            memory = {NAME_SLOT: NAME_BUFFER.to_bytes(8, "little"),
                      NAME_BUFFER: DLLS[de.u.LoadDll.lpBaseOfDll].encode("utf-16-le").ljust(0x1000, b"\0")}
        elif de.dwDebugEventCode == EventCode.OUTPUT_DEBUG_STRING_EVENT:
            memory = {de.u.DebugString.lpDebugStringData: b"message %d\n\0".ljust(
                de.u.DebugString.nDebugStringLength, b"\0")}
        script.append((raw, memory))
    return script


def test_backend_replays_the_recorded_session_like_an_engine_would() -> None:
    k = ScriptedKernel32(_recorded_script())
    backend = WindowsBackend(k)
    assert backend.spawn(SpawnOptions(argv=("int3_target.exe", "a b"))) == PID
    assert k.log[0] == ("create", 'int3_target.exe "a b"', _ffi.DEBUG_ONLY_THIS_PROCESS
                        | _ffi.CREATE_UNICODE_ENVIRONMENT, _ffi.STARTF_USESTDHANDLES)
    reported, steps, modules_at_int3 = [], [], None
    while (ev := backend.wait_event(timeout=0.05)) is not None:
        reported.append(ev)
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT and ev.info.code == ExceptionCode.BREAKPOINT:
            modules_at_int3 = modules_at_int3 or backend.modules(PID)
            regs = backend.registers(ev.tid)
            assert regs["rip"] == INT3 + 1
            regs["rip"] = ev.info.address           # the engine rewinds over its int3
            steps.append(backend.single_step(ev.tid))
        backend.resume(ev.tid)
    assert [int(e.code) for e in reported] == [3, 6, 6, 6, 6, 6, 7, 6, 7, 8, 1, 1, 1, 2, 8, 4, 6, 6, 7, 7, 5]
    assert reported[0].info.image_path == MAIN_IMAGE and reported[0].info.image_base == 0x140000000
    assert [e.info.address for e in reported if e.code == 1] == [INT3] * 3   # loader bp swallowed
    assert [(s.info.code, s.info.address, s.info.hw_slots) for s in steps] == [
        (ExceptionCode.SINGLE_STEP, INT3 + 1, ())] * 3
    assert [e.info.path for e in reported if e.code == 6][:4] == [DLLS[b] for b in
                                                                  (0x170000000, 0x7B600000, 0x7B000000, 0x228280000)]
    assert [e.info.path for e in reported if e.code == 7] == [DLLS[0x10000000]] * 2 + [
        DLLS[0x25DC30000], DLLS[0x2C7470000]]
    assert [e.info.text for e in reported if e.code == 8] == ["message %d\n"] * 2
    assert [m.path for m in modules_at_int3] == [MAIN_IMAGE] + [DLLS[b] for b in
                                                               (0x170000000, 0x7B600000, 0x7B000000, 0x228280000)]
    # Each step: rip rewound and TF set before the step, TF cleared after it.
    contexts = [entry for entry in k.log if entry[0] == "set_context"]
    assert [(rip, bool(eflags & TRAP_FLAG)) for _, _, rip, eflags, *_ in contexts] == [
        (INT3, True), (INT3 + 1, False)] * 3
    assert {entry[2] for entry in k.log if entry[0] == "continue"} == {_ffi.DBG_CONTINUE}
    assert k.pending is None and not k.script
    assert ("close", 0x900) in k.log        # CreateProcessW's handle, once CREATE_PROCESS came
    with pytest.raises(DebuggerError):
        backend.modules(PID)                    # gone after EXIT_PROCESS was continued


def _session(*events: bytes) -> tuple[ScriptedKernel32, WindowsBackend]:
    create = RAW[0]
    k = ScriptedKernel32([(create, {})] + [(e, {}) for e in events])
    backend = WindowsBackend(k)
    ev = backend.wait_event(timeout=0.05)
    assert ev is not None and ev.code == EventCode.CREATE_PROCESS_DEBUG_EVENT
    return k, backend


def test_hardware_breakpoint_reaches_every_thread_and_reports_its_slot() -> None:
    worker_handle = 0x300
    k, backend = _session(
        _synthetic(2, tid=WORKER_TID, handle=worker_handle),
        _synthetic(1, tid=WORKER_TID, exc=ExceptionCode.SINGLE_STEP, address=0x401500))
    backend.set_hardware_breakpoint(PID, 1, 0x401500, "execute", 1)
    backend.resume(MAIN_TID)
    assert k.contexts[0x60].Dr1 == 0x401500 and k.contexts[0x60].Dr7 & 0b1100 == 0b0100
    ev = backend.wait_event(timeout=0.05)           # CREATE_THREAD: the new thread gets Dr1 too
    backend.resume(ev.tid)
    assert k.contexts[worker_handle].Dr1 == 0x401500 and k.contexts[worker_handle].Dr7 & 0b0100
    k.contexts[worker_handle].Dr6 = 0b0010          # what the CPU sets for slot 1
    ev = backend.wait_event(timeout=0.05)
    assert (ev.info.code, ev.info.address, ev.info.hw_slots) == (ExceptionCode.SINGLE_STEP, 0x401500, (1,))
    backend.resume(ev.tid)
    after = k.contexts[worker_handle]
    assert after.Dr6 == 0 and after.EFlags & RESUME_FLAG   # RF: do not fire again on resume


def test_guard_page_reports_only_the_watched_range_and_rearms() -> None:
    page, watched = 0x7000, 0x7010
    k, backend = _session(
        _synthetic(1, exc=ExceptionCode.GUARD_PAGE, address=0x401000, params=(0, 0x7800)),  # same page, outside
        _synthetic(1, exc=ExceptionCode.SINGLE_STEP, address=0x401004),
        _synthetic(1, exc=ExceptionCode.GUARD_PAGE, address=0x401010, params=(1, watched + 2)),
        _synthetic(1, exc=ExceptionCode.SINGLE_STEP, address=0x401014),
        _synthetic(5, exit_code=0))
    backend.set_memory_breakpoint(PID, watched, 4, "write")
    assert k.protections[page] == _ffi.PAGE_READWRITE | _ffi.PAGE_GUARD
    backend.resume(MAIN_TID)
    k.protections[page] = _ffi.PAGE_READWRITE       # the system consumes the guard on each hit ...
    ev = backend.wait_event(timeout=0.05)           # ... the silent one was stepped and re-armed
    assert (ev.info.code, ev.info.fault_address, ev.info.access) == (ExceptionCode.GUARD_PAGE, watched + 2, Access.WRITE)
    assert k.protections[page] == _ffi.PAGE_READWRITE | _ffi.PAGE_GUARD
    k.protections[page] = _ffi.PAGE_READWRITE
    backend.resume(ev.tid)                          # steps the write, re-arms, continues
    assert k.protections[page] == _ffi.PAGE_READWRITE | _ffi.PAGE_GUARD
    ev = backend.wait_event(timeout=0.05)
    assert ev.code == EventCode.EXIT_PROCESS_DEBUG_EVENT
    assert all(n == 0 for n in k.suspended.values())


def test_memory_reads_lift_our_guard_and_put_it_back() -> None:
    k, backend = _session()
    k.memory[0x7010] = b"\x11\x22\x33\x44"
    backend.set_memory_breakpoint(PID, 0x7010, 4, "any")
    assert backend.read_memory(PID, 0x7010, 4) == b"\x11\x22\x33\x44"
    assert [e[2] for e in k.log if e[0] == "protect"][-2:] == [_ffi.PAGE_READWRITE,
                                                              _ffi.PAGE_READWRITE | _ffi.PAGE_GUARD]
    backend.clear_memory_breakpoint(PID, 0x7010)
    assert k.protections[0x7000] == _ffi.PAGE_READWRITE
    with pytest.raises(DebuggerError):
        backend.read_memory(PID, 0x9999000, 4)


def test_exceptions_keep_first_chance_and_pass_through_on_request() -> None:
    k, backend = _session(_synthetic(1, exc=ExceptionCode.ACCESS_VIOLATION, address=0x401234,
                                     params=(1, 0x10), first_chance=1))
    backend.resume(MAIN_TID)
    ev = backend.wait_event(timeout=0.05)
    assert (ev.info.access, ev.info.fault_address, ev.info.first_chance) == (Access.WRITE, 0x10, True)
    backend.resume(ev.tid, pass_exception=True)
    assert k.log[-1] == ("continue", MAIN_TID, _ffi.DBG_EXCEPTION_NOT_HANDLED)


def test_timeout_returns_none_and_other_threads_are_refused() -> None:
    k, backend = _session()
    backend.resume(MAIN_TID)
    assert backend.wait_event(timeout=0.01) is None
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: _catch(errors, backend.wait_event, 0.01))
    worker.start()
    worker.join()
    assert len(errors) == 1 and isinstance(errors[0], DebuggerError)


def _catch(errors: list[BaseException], fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001 - handed to the asserting thread
        errors.append(e)


def test_failed_create_process_is_a_target_error() -> None:
    class Refusing(ScriptedKernel32):
        def CreateProcessW(self, *args: Any) -> int:
            self._fail("CreateProcessW", 2)
            return 0
    with pytest.raises(TargetError):
        WindowsBackend(Refusing([])).spawn(SpawnOptions(argv=("missing.exe",)))


def test_kill_terminates_and_drains_to_exit_process() -> None:
    k, backend = _session(RAW[1], _synthetic(5, exit_code=1))
    backend.kill(PID)
    assert ("terminate", 0x64) in k.log and k.pending is None and not k.script
    with pytest.raises(DebuggerError):
        backend.threads(PID)


def test_import_does_not_load_kernel32_on_linux() -> None:
    import instrument.backend.windows  # noqa: F401 - the import itself is the test
    with pytest.raises(DebuggerError):
        WindowsBackend()


# -- a 32-bit debugger: the cdecl ABI ---------------------------------------------------
class _CdeclModules:
    """Module map of a fake program with no symbols (the breakpoint is at an address)."""

    def add(self, module: Any) -> None: ...
    def remove(self, base: int) -> None: ...
    def extent(self, base: int) -> None: return None
    def resolve(self, name: str) -> int: raise KeyError(name)
    def find(self, address: int) -> None: return None
    def is_ifunc(self, address: int) -> bool: return False
    def describe(self, address: int, **options: Any) -> dict[str, Any]:
        return {"module": "fake", "offset": address, "symbol": None}
    def image_of(self, module: Any) -> None: return None
    def symbol_text(self, address: int) -> str: return hex(address)


def test_a_32_bit_debugger_reads_cdecl_arguments_at_a_hardware_breakpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 32-bit debugger's Windows backend names the cdecl ABI. The register code once
    # did not know it: a hardware breakpoint logging arg0 raised KeyError('cdecl') as
    # the session was created, and arg0 could not be read at all.
    monkeypatch.setattr(_ffi, "NATIVE", _ffi.STRUCTS32)
    capabilities = WindowsBackend(kernel32=object()).capabilities
    assert (capabilities.arch, capabilities.abi) == ("x86", Abi.CDECL)

    backend = FakeBackend([("reach", MAIN_TID, 0x401000, {"rsp": 0x7000}),
                           ("event", DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, 100, MAIN_TID,
                                                ExceptionInfo(ExceptionCode.SINGLE_STEP, 0x401000,
                                                              hw_slots=(0,))))],
                          memory={0x7000 + i: b for i, b in enumerate(
                              (0x401234).to_bytes(4, "little") + (0x11).to_bytes(4, "little")
                              + (0xFFFFFFFE).to_bytes(4, "little"))})
    backend.capabilities = dataclasses.replace(FAKE_CAPABILITIES, os="windows", arch="x86", abi=capabilities.abi)
    recipe = load_recipe("version: 1\nname: t\ndescription: test\nbreakpoints:\n  - id: h\n    at: 0x401000\n"
                         "    type: hardware\n    actions:\n      - log: 'arg0={arg0:#x} arg1={arg1:#x}'\n",
                         file="t.yaml")
    records: list[dict[str, Any]] = []
    run(compile_plan(recipe, command=["fake"]), emit=records.append, backend=backend,
        module_map_factory=_CdeclModules)
    # [esp] is the return address; the arguments follow in 4-byte slots.
    assert [r["message"] for r in records if r["event"] == "breakpoint"] == ["arg0=0x11 arg1=0xfffffffe"]
