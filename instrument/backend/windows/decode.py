"""Decode one raw DEBUG_EVENT into the frozen event values of instrument.events.

This is the one place where Windows debug events become `DebugEvent`s. It is
pure apart from the `TargetView` it is given (memory reads for names and
strings, Dr6 for hardware hits), so recorded events replay on Linux.
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace
from typing import Any, Callable, Protocol

from ...arch.x86_64 import dr6_slots
from ...errors import DebuggerError
from ...events import (
    Access, CreateProcessInfo, CreateThreadInfo, DebugEvent, DebugStringInfo, EventCode, EventInfo,
    ExceptionCode, ExceptionInfo, ExitProcessInfo, ExitThreadInfo, LoadDllInfo, RipInfo,
    UnloadDllInfo,
)
from . import _ffi

# ExceptionInformation[0] of an access violation / guard page / in-page error.
_ACCESS_BY_FLAG = {0: Access.READ, 1: Access.WRITE, 8: Access.EXECUTE}  # 8: DEP
_FAULTS_WITH_ADDRESS = (ExceptionCode.ACCESS_VIOLATION, ExceptionCode.GUARD_PAGE,
                        ExceptionCode.IN_PAGE_ERROR)
# A 64-bit debugger sees a WOW64 process's 32-bit int3 / trace trap under these codes.
_WX86_CODES = {_ffi.STATUS_WX86_BREAKPOINT: ExceptionCode.BREAKPOINT,
               _ffi.STATUS_WX86_SINGLE_STEP: ExceptionCode.SINGLE_STEP}
_MAX_NAME_BYTES = 2 * 32768   # the longest NT path, in UTF-16
_PAGE = 0x1000
_CHUNK = 512                  # MAX_PATH UTF-16 characters: most names in one read


class TargetView(Protocol):
    """What decoding needs from the live debuggee (the backend implements it)."""

    def read(self, pid: int, address: int, size: int) -> bytes | None:
        """`size` bytes of the debuggee's memory, or None when unreadable."""

    def handle_path(self, handle: int) -> str | None:
        """The path of a file handle the debug event gave us (GetFinalPathNameByHandleW)."""

    def dr6(self, pid: int, tid: int) -> int:
        """Dr6 of the stopped thread."""


def decode_event(raw: bytes, view: TargetView | None = None,
                 structs: SimpleNamespace = _ffi.NATIVE, pointer_size: int | None = None) -> DebugEvent:
    """Decode a DEBUG_EVENT (the raw bytes WaitForDebugEvent filled in).

    `structs` picks the debugger's layout (STRUCTS64 for a 64-bit debugger);
    `pointer_size` is the debuggee's (4 for a WOW64 process), for pointers
    read out of its memory. Without a view, names and strings are empty."""
    de = structs.DEBUG_EVENT.from_buffer_copy(raw[:ctypes.sizeof(structs.DEBUG_EVENT)])
    code, pid, tid = de.dwDebugEventCode, de.dwProcessId, de.dwThreadId
    psize = pointer_size or structs.pointer_size
    try:
        event_code = EventCode(code)
    except ValueError:
        raise DebuggerError(f"unknown debug event code {code}") from None
    decoder = _DECODERS[event_code]
    return DebugEvent(event_code, pid, tid, decoder(de.u, pid, tid, view, psize))


def _exception(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> ExceptionInfo:
    rec = u.Exception.ExceptionRecord
    code = _WX86_CODES.get(rec.ExceptionCode, rec.ExceptionCode)
    params = list(rec.ExceptionInformation[:min(rec.NumberParameters, _ffi.EXCEPTION_MAXIMUM_PARAMETERS)])
    fault_address = access = None
    if code in _FAULTS_WITH_ADDRESS and len(params) >= 2:
        access = _ACCESS_BY_FLAG.get(params[0])
        fault_address = params[1]
    slots: tuple[int, ...] = ()
    if code == ExceptionCode.SINGLE_STEP and view is not None:
        slots = dr6_slots(view.dr6(pid, tid))
    # Windows (and wine) already report an int3 at its own address, unlike
    # the CPU and Linux, which report the address after it.
    return ExceptionInfo(code=code, address=rec.ExceptionAddress,
                         first_chance=bool(u.Exception.dwFirstChance),
                         fault_address=fault_address, access=access, hw_slots=slots)


def _create_thread(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> CreateThreadInfo:
    return CreateThreadInfo(start_address=u.CreateThread.lpStartAddress or None)


def _create_process(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> CreateProcessInfo:
    info = u.CreateProcessInfo
    path = image_name(view, pid, info.lpImageName, bool(info.fUnicode), info.hFile, psize)
    return CreateProcessInfo(image_path=path, image_base=info.lpBaseOfImage or None)


def _exit_thread(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> ExitThreadInfo:
    return ExitThreadInfo(exit_code=u.ExitThread.dwExitCode)


def _exit_process(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> ExitProcessInfo:
    return ExitProcessInfo(exit_code=u.ExitProcess.dwExitCode)


def _load_dll(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> LoadDllInfo:
    info = u.LoadDll
    path = image_name(view, pid, info.lpImageName, bool(info.fUnicode), info.hFile, psize)
    return LoadDllInfo(path=path, base=info.lpBaseOfDll)


def _unload_dll(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> UnloadDllInfo:
    return UnloadDllInfo(base=u.UnloadDll.lpBaseOfDll)


def _debug_string(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> DebugStringInfo:
    info = u.DebugString
    if view is None or not info.lpDebugStringData:
        return DebugStringInfo(text="")
    wide = bool(info.fUnicode)
    # nDebugStringLength counts the terminating NUL; for wide strings read
    # two bytes per unit, since documentation and practice disagree on its unit.
    size = info.nDebugStringLength * (2 if wide else 1)
    data = view.read(pid, info.lpDebugStringData, size) or b""
    return DebugStringInfo(text=_text(data, wide))


def _rip(u: Any, pid: int, tid: int, view: TargetView | None, psize: int) -> RipInfo:
    return RipInfo(error=f"RIP: Win32 error {u.RipInfo.dwError}, type {u.RipInfo.dwType}")


# event code -> decoder(u, pid, tid, view, debuggee pointer size) of its DEBUG_EVENT union member
_DECODERS: dict[EventCode, Callable[[Any, int, int, TargetView | None, int], EventInfo]] = {
    EventCode.EXCEPTION_DEBUG_EVENT: _exception,
    EventCode.CREATE_THREAD_DEBUG_EVENT: _create_thread,
    EventCode.CREATE_PROCESS_DEBUG_EVENT: _create_process,
    EventCode.EXIT_THREAD_DEBUG_EVENT: _exit_thread,
    EventCode.EXIT_PROCESS_DEBUG_EVENT: _exit_process,
    EventCode.LOAD_DLL_DEBUG_EVENT: _load_dll,
    EventCode.UNLOAD_DLL_DEBUG_EVENT: _unload_dll,
    EventCode.OUTPUT_DEBUG_STRING_EVENT: _debug_string,
    EventCode.RIP_EVENT: _rip,
}


def image_name(view: TargetView | None, pid: int, name_ptr: int, wide: bool, handle: int,
               psize: int) -> str:
    """A module's path: from lpImageName when the loader filled it, else from hFile.

    lpImageName is a pointer, in the debuggee, to a pointer to the name, and
    "may be NULL, or point to NULL" (MSDN): the first image and ntdll usually
    come without it, so the file handle is the fallback."""
    if view is None:
        return ""
    if name_ptr:
        raw_ptr = view.read(pid, name_ptr, psize)
        target = int.from_bytes(raw_ptr, "little") if raw_ptr and len(raw_ptr) == psize else 0
        if target:
            name = read_cstring(view, pid, target, wide)
            if name:
                return name
    if handle:
        path = view.handle_path(handle)
        if path:
            return strip_nt_prefix(path)
    return ""


def read_cstring(view: TargetView, pid: int, address: int, wide: bool,
                 limit: int = _MAX_NAME_BYTES) -> str:
    """A NUL-terminated string, read a page at a time: one read across a page
    boundary into an unmapped page would fail as a whole (ERROR_PARTIAL_COPY)."""
    unit = 2 if wide else 1
    data = b""
    while len(data) < limit:
        at = address + len(data)
        chunk = view.read(pid, at, min(_CHUNK, _PAGE - at % _PAGE))
        if not chunk:
            break
        data += chunk
        if _terminator(data, unit) >= 0:
            break
    return _text(data, wide)


def _terminator(data: bytes, unit: int) -> int:
    zero = b"\0" * unit
    for i in range(0, len(data) - unit + 1, unit):
        if data[i:i + unit] == zero:
            return i
    return -1


def _text(data: bytes, wide: bool) -> str:
    end = _terminator(data, 2 if wide else 1)
    if end >= 0:
        data = data[:end]
    # ANSI debug strings are in the target's code page, which we cannot know
    # from here; UTF-8 with replacement never fails and is right for ASCII.
    return data.decode("utf-16-le" if wide else "utf-8", errors="replace")


def strip_nt_prefix(path: str) -> str:
    r"""GetFinalPathNameByHandleW answers \\?\C:\x or \\?\UNC\host\share\x."""
    if path.startswith("\\\\?\\UNC\\"):
        return "\\\\" + path[8:]
    if path.startswith("\\\\?\\"):
        return path[4:]
    return path
