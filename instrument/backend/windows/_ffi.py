"""kernel32 through ctypes: Windows debugging structures, constants and functions.

Only fixed-width ctypes types are used (never ctypes.wintypes: on Linux its
DWORD is 8 bytes), so the structures have their Windows layout on any host:
the layout and replay tests build and check them on Linux. `STRUCTS64` and
`STRUCTS32` hold the x64 and the 32-bit (i386 / WOW64) variants; `NATIVE` is
the one matching this Python. kernel32 itself is loaded lazily, by
`load_kernel32()`, only when a backend is created.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    POINTER, Structure, Union, c_int32, c_int64, c_size_t, c_uint8, c_uint16,
    c_uint32, c_uint64, c_void_p, c_wchar_p,
)
from types import SimpleNamespace
from typing import Any, Callable, NoReturn

from ...errors import DebuggerError

# -- constants (values measured with mingw-w64 headers, see layouts64.txt) ----
DEBUG_PROCESS = 0x1
DEBUG_ONLY_THIS_PROCESS = 0x2
CREATE_SUSPENDED = 0x4
CREATE_NEW_CONSOLE = 0x10
CREATE_UNICODE_ENVIRONMENT = 0x400
STARTF_USESTDHANDLES = 0x100
DUPLICATE_SAME_ACCESS = 0x2
DBG_CONTINUE = 0x10002
DBG_EXCEPTION_NOT_HANDLED = 0x80010001
DBG_REPLY_LATER = 0x40010001
STATUS_WX86_BREAKPOINT = 0x4000001F
STATUS_WX86_SINGLE_STEP = 0x4000001E
EXCEPTION_MAXIMUM_PARAMETERS = 15
PAGE_NOACCESS = 0x1
PAGE_READONLY = 0x2
PAGE_READWRITE = 0x4
PAGE_EXECUTE = 0x10
PAGE_EXECUTE_READ = 0x20
PAGE_EXECUTE_READWRITE = 0x40
PAGE_GUARD = 0x100
MEM_COMMIT = 0x1000
MEM_IMAGE = 0x1000000
THREAD_ALL_ACCESS = 0x1FFFFF
THREAD_GET_CONTEXT = 0x8
THREAD_SET_CONTEXT = 0x10
THREAD_SUSPEND_RESUME = 0x2
PROCESS_ALL_ACCESS = 0x1FFFFF
INFINITE = 0xFFFFFFFF
STD_INPUT_HANDLE = -10 & 0xFFFFFFFF
STD_OUTPUT_HANDLE = -11 & 0xFFFFFFFF
STD_ERROR_HANDLE = -12 & 0xFFFFFFFF
ERROR_SEM_TIMEOUT = 121        # WaitForDebugEvent's "nothing happened in time"
ERROR_PARTIAL_COPY = 299
ERROR_INVALID_HANDLE = 6       # also: WaitForDebugEvent from a thread that is not the debugger's

CONTEXT_AMD64 = 0x100000
CONTEXT_CONTROL = CONTEXT_AMD64 | 0x1
CONTEXT_INTEGER = CONTEXT_AMD64 | 0x2
CONTEXT_SEGMENTS = CONTEXT_AMD64 | 0x4
CONTEXT_FLOATING_POINT = CONTEXT_AMD64 | 0x8
CONTEXT_DEBUG_REGISTERS = CONTEXT_AMD64 | 0x10
CONTEXT_FULL = CONTEXT_CONTROL | CONTEXT_INTEGER | CONTEXT_FLOATING_POINT
CONTEXT_ALL = CONTEXT_FULL | CONTEXT_SEGMENTS | CONTEXT_DEBUG_REGISTERS
WOW64_CONTEXT_i386 = 0x10000
WOW64_CONTEXT_CONTROL = WOW64_CONTEXT_i386 | 0x1
WOW64_CONTEXT_INTEGER = WOW64_CONTEXT_i386 | 0x2
WOW64_CONTEXT_SEGMENTS = WOW64_CONTEXT_i386 | 0x4
WOW64_CONTEXT_FLOATING_POINT = WOW64_CONTEXT_i386 | 0x8
WOW64_CONTEXT_DEBUG_REGISTERS = WOW64_CONTEXT_i386 | 0x10
WOW64_CONTEXT_FULL = WOW64_CONTEXT_CONTROL | WOW64_CONTEXT_INTEGER | WOW64_CONTEXT_SEGMENTS
WOW64_CONTEXT_EXTENDED_REGISTERS = WOW64_CONTEXT_i386 | 0x20
WOW64_CONTEXT_ALL = WOW64_CONTEXT_i386 | 0x3F
# What one stop reads: no FPU/XMM state (512+ bytes we would copy for nothing).
CONTEXT_STOP = CONTEXT_CONTROL | CONTEXT_INTEGER | CONTEXT_SEGMENTS | CONTEXT_DEBUG_REGISTERS
WOW64_CONTEXT_STOP = WOW64_CONTEXT_FULL | WOW64_CONTEXT_DEBUG_REGISTERS


# -- structures that do not depend on pointer width ---------------------------
class M128A(Structure):
    # DECLSPEC_ALIGN(16). `_align_` is honoured from CPython 3.13 on (the
    # Windows Python the wine suite runs); on 3.11 CONTEXT still gets the
    # right offsets and `aligned_context` supplies the 16-byte alignment.
    _align_ = 16
    _fields_ = [("Low", c_uint64), ("High", c_int64)]


class XMM_SAVE_AREA32(Structure):
    _align_ = 16
    _fields_ = [
        ("ControlWord", c_uint16), ("StatusWord", c_uint16), ("TagWord", c_uint8),
        ("Reserved1", c_uint8), ("ErrorOpcode", c_uint16), ("ErrorOffset", c_uint32),
        ("ErrorSelector", c_uint16), ("Reserved2", c_uint16), ("DataOffset", c_uint32),
        ("DataSelector", c_uint16), ("Reserved3", c_uint16), ("MxCsr", c_uint32),
        ("MxCsr_Mask", c_uint32), ("FloatRegisters", M128A * 8),
        ("XmmRegisters", M128A * 16), ("Reserved4", c_uint8 * 96),
    ]


class _XMM_REGS(Structure):
    _fields_ = [("Header", M128A * 2), ("Legacy", M128A * 8)] + [(f"Xmm{i}", M128A) for i in range(16)]


class _FLT_UNION(Union):
    _anonymous_ = ("_regs",)
    _fields_ = [("FltSave", XMM_SAVE_AREA32), ("_regs", _XMM_REGS)]


_GPRS64 = ("Rax", "Rcx", "Rdx", "Rbx", "Rsp", "Rbp", "Rsi", "Rdi",
           "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15", "Rip")


# (name, ctypes type) lists built by comprehension: typed as Any for ctypes' stubs.
_X64_CONTEXT_FIELDS: list[tuple[str, Any]] = (
    [(f"P{i}Home", c_uint64) for i in range(1, 7)]
    + [("ContextFlags", c_uint32), ("MxCsr", c_uint32)]
    + [(f"Seg{s}", c_uint16) for s in ("Cs", "Ds", "Es", "Fs", "Gs", "Ss")]
    + [("EFlags", c_uint32)]
    + [(f"Dr{i}", c_uint64) for i in (0, 1, 2, 3, 6, 7)]
    + [(r, c_uint64) for r in _GPRS64]
    + [("_flt", _FLT_UNION), ("VectorRegister", M128A * 26), ("VectorControl", c_uint64),
       ("DebugControl", c_uint64), ("LastBranchToRip", c_uint64),
       ("LastBranchFromRip", c_uint64), ("LastExceptionToRip", c_uint64),
       ("LastExceptionFromRip", c_uint64)]
)


class CONTEXT(Structure):
    """The x64 CONTEXT (winnt.h). Windows wants it 16-byte aligned: use aligned_context()."""

    _align_ = 16
    _anonymous_ = ("_flt",)
    _fields_ = _X64_CONTEXT_FIELDS


_FLOATING_SAVE_AREA_FIELDS: list[tuple[str, Any]] = [
    (n, c_uint32) for n in ("ControlWord", "StatusWord", "TagWord", "ErrorOffset", "ErrorSelector",
                            "DataOffset", "DataSelector")
] + [("RegisterArea", c_uint8 * 80), ("Cr0NpxState", c_uint32)]


class FLOATING_SAVE_AREA(Structure):
    _fields_ = _FLOATING_SAVE_AREA_FIELDS


_X86_CONTEXT_FIELDS: list[tuple[str, Any]] = (
    [("ContextFlags", c_uint32)]
    + [(f"Dr{i}", c_uint32) for i in (0, 1, 2, 3, 6, 7)]
    + [("FloatSave", FLOATING_SAVE_AREA)]
    + [(n, c_uint32) for n in ("SegGs", "SegFs", "SegEs", "SegDs", "Edi", "Esi", "Ebx", "Edx",
                               "Ecx", "Eax", "Ebp", "Eip", "SegCs", "EFlags", "Esp", "SegSs")]
    + [("ExtendedRegisters", c_uint8 * 512)]
)


class WOW64_FLOATING_SAVE_AREA(Structure):
    _fields_ = FLOATING_SAVE_AREA._fields_


class WOW64_CONTEXT(Structure):
    """A 32-bit thread's context seen from a 64-bit debugger (Wow64GetThreadContext)."""

    _fields_ = [(n, WOW64_FLOATING_SAVE_AREA if t is FLOATING_SAVE_AREA else t)
                for n, t in _X86_CONTEXT_FIELDS]


class CONTEXT32(Structure):
    """The i386 CONTEXT (what a 32-bit debugger passes to GetThreadContext)."""

    _fields_ = _X86_CONTEXT_FIELDS


class EXCEPTION_RECORD32(Structure):
    _fields_ = [("ExceptionCode", c_uint32), ("ExceptionFlags", c_uint32),
                ("ExceptionRecord", c_uint32), ("ExceptionAddress", c_uint32),
                ("NumberParameters", c_uint32),
                ("ExceptionInformation", c_uint32 * EXCEPTION_MAXIMUM_PARAMETERS)]


class EXCEPTION_RECORD64(Structure):
    _fields_ = [("ExceptionCode", c_uint32), ("ExceptionFlags", c_uint32),
                ("ExceptionRecord", c_uint64), ("ExceptionAddress", c_uint64),
                ("NumberParameters", c_uint32), ("__unusedAlignment", c_uint32),
                ("ExceptionInformation", c_uint64 * EXCEPTION_MAXIMUM_PARAMETERS)]


class MEMORY_BASIC_INFORMATION32(Structure):
    _fields_ = [("BaseAddress", c_uint32), ("AllocationBase", c_uint32),
                ("AllocationProtect", c_uint32), ("RegionSize", c_uint32),
                ("State", c_uint32), ("Protect", c_uint32), ("Type", c_uint32)]


class MEMORY_BASIC_INFORMATION64(Structure):
    _align_ = 16
    _fields_ = [("BaseAddress", c_uint64), ("AllocationBase", c_uint64),
                ("AllocationProtect", c_uint32), ("__alignment1", c_uint32),
                ("RegionSize", c_uint64), ("State", c_uint32), ("Protect", c_uint32),
                ("Type", c_uint32), ("__alignment2", c_uint32)]


class LDT_ENTRY(Structure):
    _fields_ = [("LimitLow", c_uint16), ("BaseLow", c_uint16), ("HighWord", c_uint32)]


# -- structures whose pointers, handles and SIZE_Ts change width ---------------
def _width_dependent(ptr: type[c_uint32] | type[c_uint64]) -> SimpleNamespace:
    """Build the pointer-width-dependent structures with `ptr` for HANDLE/LPVOID/SIZE_T.

    Pointers are plain integers here: the debugger never dereferences them in
    its own address space, they are addresses in the debuggee."""

    def struct(name: str, fields: list[tuple[str, Any]], base: type = Structure) -> type:
        return type(name, (base,), {"_fields_": fields})

    er = struct("EXCEPTION_RECORD", [
        ("ExceptionCode", c_uint32), ("ExceptionFlags", c_uint32), ("ExceptionRecord", ptr),
        ("ExceptionAddress", ptr), ("NumberParameters", c_uint32),
        ("ExceptionInformation", ptr * EXCEPTION_MAXIMUM_PARAMETERS)])
    members = {
        "Exception": struct("EXCEPTION_DEBUG_INFO", [("ExceptionRecord", er), ("dwFirstChance", c_uint32)]),
        "CreateThread": struct("CREATE_THREAD_DEBUG_INFO", [
            ("hThread", ptr), ("lpThreadLocalBase", ptr), ("lpStartAddress", ptr)]),
        "CreateProcessInfo": struct("CREATE_PROCESS_DEBUG_INFO", [
            ("hFile", ptr), ("hProcess", ptr), ("hThread", ptr), ("lpBaseOfImage", ptr),
            ("dwDebugInfoFileOffset", c_uint32), ("nDebugInfoSize", c_uint32),
            ("lpThreadLocalBase", ptr), ("lpStartAddress", ptr), ("lpImageName", ptr),
            ("fUnicode", c_uint16)]),
        "ExitThread": struct("EXIT_THREAD_DEBUG_INFO", [("dwExitCode", c_uint32)]),
        "ExitProcess": struct("EXIT_PROCESS_DEBUG_INFO", [("dwExitCode", c_uint32)]),
        "LoadDll": struct("LOAD_DLL_DEBUG_INFO", [
            ("hFile", ptr), ("lpBaseOfDll", ptr), ("dwDebugInfoFileOffset", c_uint32),
            ("nDebugInfoSize", c_uint32), ("lpImageName", ptr), ("fUnicode", c_uint16)]),
        "UnloadDll": struct("UNLOAD_DLL_DEBUG_INFO", [("lpBaseOfDll", ptr)]),
        "DebugString": struct("OUTPUT_DEBUG_STRING_INFO", [
            ("lpDebugStringData", ptr), ("fUnicode", c_uint16), ("nDebugStringLength", c_uint16)]),
        "RipInfo": struct("RIP_INFO", [("dwError", c_uint32), ("dwType", c_uint32)]),
    }
    union = struct("DEBUG_EVENT_U", list(members.items()), Union)
    ns = SimpleNamespace(**{cls.__name__: cls for cls in members.values()})
    ns.EXCEPTION_RECORD = er
    ns.DEBUG_EVENT = struct("DEBUG_EVENT", [
        ("dwDebugEventCode", c_uint32), ("dwProcessId", c_uint32), ("dwThreadId", c_uint32),
        ("u", union)])
    ns.STARTUPINFOW = struct("STARTUPINFOW", [
        ("cb", c_uint32), ("lpReserved", ptr), ("lpDesktop", ptr), ("lpTitle", ptr)]
        + [(n, c_uint32) for n in ("dwX", "dwY", "dwXSize", "dwYSize", "dwXCountChars",
                                   "dwYCountChars", "dwFillAttribute", "dwFlags")]
        + [("wShowWindow", c_uint16), ("cbReserved2", c_uint16), ("lpReserved2", ptr),
           ("hStdInput", ptr), ("hStdOutput", ptr), ("hStdError", ptr)])
    ns.PROCESS_INFORMATION = struct("PROCESS_INFORMATION", [
        ("hProcess", ptr), ("hThread", ptr), ("dwProcessId", c_uint32), ("dwThreadId", c_uint32)])
    # Not MEMORY_BASIC_INFORMATION64: the native x64 one is only 8-byte aligned.
    ns.MEMORY_BASIC_INFORMATION = struct("MEMORY_BASIC_INFORMATION", [
        ("BaseAddress", ptr), ("AllocationBase", ptr), ("AllocationProtect", c_uint32),
        ("RegionSize", ptr), ("State", c_uint32), ("Protect", c_uint32), ("Type", c_uint32)])
    ns.pointer_size = ctypes.sizeof(ptr)
    return ns


STRUCTS64 = _width_dependent(c_uint64)
STRUCTS64.CONTEXT = CONTEXT
STRUCTS64.WOW64_CONTEXT = WOW64_CONTEXT
STRUCTS32 = _width_dependent(c_uint32)
STRUCTS32.CONTEXT = CONTEXT32
for _ns in (STRUCTS32, STRUCTS64):
    for _cls in (EXCEPTION_RECORD32, EXCEPTION_RECORD64, MEMORY_BASIC_INFORMATION32,
                 MEMORY_BASIC_INFORMATION64, LDT_ENTRY, M128A, XMM_SAVE_AREA32,
                 FLOATING_SAVE_AREA, WOW64_FLOATING_SAVE_AREA):
        setattr(_ns, _cls.__name__, _cls)
# The layout this Python uses when it talks to kernel32.
NATIVE = STRUCTS64 if ctypes.sizeof(c_void_p) == 8 else STRUCTS32


def aligned_context(cls: type[Structure] = CONTEXT) -> Any:
    """A zeroed CONTEXT at a 16-byte aligned address.

    x64 Windows rejects a misaligned CONTEXT in Get/SetThreadContext with
    ERROR_NOACCESS (wine does not), and CPython before 3.13 cannot express
    DECLSPEC_ALIGN(16), so over-allocate and place the structure by hand."""
    raw = (c_uint8 * (ctypes.sizeof(cls) + 16))()
    skew = (-ctypes.addressof(raw)) % 16
    ctx = cls.from_buffer(raw, skew)
    ctx._keepalive = raw  # the structure borrows raw's memory
    return ctx


# -- errors -------------------------------------------------------------------
class Win32Error(DebuggerError):
    """A kernel32 call failed; `winerror` is its GetLastError() value."""

    def __init__(self, function: str, winerror: int) -> None:
        super().__init__(f"{function} failed: Win32 error {winerror} ({_describe(winerror)})")
        self.function = function
        self.winerror = winerror


def _describe(winerror: int) -> str:
    fmt = getattr(ctypes, "FormatError", None)  # Windows only
    return fmt(winerror).strip() if fmt else "see winerror.h"


# ctypes.get_last_error exists on Windows only (and typeshed declares it there only).
_get_last_error: Callable[[], int] = getattr(ctypes, "get_last_error", lambda: 0)


def _raise_last(function: str) -> NoReturn:
    raise Win32Error(function, _get_last_error())


def _check_bool(result: int, func: Any, args: tuple[Any, ...]) -> int:
    if not result:
        _raise_last(func.__name__)
    return result


def _check_nonzero(result: int | None, func: Any, args: tuple[Any, ...]) -> int:
    # HANDLE/SIZE_T/DWORD results where 0 (or NULL) means failure.
    if not result:
        _raise_last(func.__name__)
    return int(result)


def _check_not_minus1(result: int, func: Any, args: tuple[Any, ...]) -> int:
    # SuspendThread/ResumeThread return (DWORD)-1 on failure, else the old count.
    if result == 0xFFFFFFFF:
        _raise_last(func.__name__)
    return result


HANDLE = c_void_p
LPVOID = c_void_p
DWORD = c_uint32
BOOL = c_int32
_PSIZE = POINTER(c_size_t)
_PDWORD = POINTER(c_uint32)

# name -> (restype, argtypes, errcheck); the C prototype above each entry.
_PROTOTYPES: dict[str, tuple[Any, list[Any], Callable[..., Any] | None]] = {
    # BOOL CreateProcessW(LPCWSTR lpApplicationName, LPWSTR lpCommandLine,
    #   LPSECURITY_ATTRIBUTES lpProcessAttributes, LPSECURITY_ATTRIBUTES lpThreadAttributes,
    #   BOOL bInheritHandles, DWORD dwCreationFlags, LPVOID lpEnvironment,
    #   LPCWSTR lpCurrentDirectory, LPSTARTUPINFOW lpStartupInfo,
    #   LPPROCESS_INFORMATION lpProcessInformation);
    "CreateProcessW": (BOOL, [c_wchar_p, c_void_p, LPVOID, LPVOID, BOOL, DWORD, LPVOID,
                              c_wchar_p, POINTER(NATIVE.STARTUPINFOW),
                              POINTER(NATIVE.PROCESS_INFORMATION)], _check_bool),
    # BOOL DebugActiveProcess(DWORD dwProcessId);
    "DebugActiveProcess": (BOOL, [DWORD], _check_bool),
    # BOOL DebugActiveProcessStop(DWORD dwProcessId);
    "DebugActiveProcessStop": (BOOL, [DWORD], _check_bool),
    # BOOL DebugSetProcessKillOnExit(BOOL KillOnExit);
    "DebugSetProcessKillOnExit": (BOOL, [BOOL], _check_bool),
    # BOOL WaitForDebugEvent(LPDEBUG_EVENT lpDebugEvent, DWORD dwMilliseconds);
    "WaitForDebugEvent": (BOOL, [POINTER(NATIVE.DEBUG_EVENT), DWORD], _check_bool),
    # BOOL ContinueDebugEvent(DWORD dwProcessId, DWORD dwThreadId, DWORD dwContinueStatus);
    "ContinueDebugEvent": (BOOL, [DWORD, DWORD, DWORD], _check_bool),
    # BOOL GetThreadContext(HANDLE hThread, LPCONTEXT lpContext);
    "GetThreadContext": (BOOL, [HANDLE, POINTER(NATIVE.CONTEXT)], _check_bool),
    # BOOL SetThreadContext(HANDLE hThread, const CONTEXT *lpContext);
    "SetThreadContext": (BOOL, [HANDLE, POINTER(NATIVE.CONTEXT)], _check_bool),
    # BOOL Wow64GetThreadContext(HANDLE hThread, PWOW64_CONTEXT lpContext);
    "Wow64GetThreadContext": (BOOL, [HANDLE, POINTER(WOW64_CONTEXT)], _check_bool),
    # BOOL Wow64SetThreadContext(HANDLE hThread, const WOW64_CONTEXT *lpContext);
    "Wow64SetThreadContext": (BOOL, [HANDLE, POINTER(WOW64_CONTEXT)], _check_bool),
    # BOOL IsWow64Process(HANDLE hProcess, PBOOL Wow64Process);
    "IsWow64Process": (BOOL, [HANDLE, POINTER(BOOL)], _check_bool),
    # BOOL ReadProcessMemory(HANDLE hProcess, LPCVOID lpBaseAddress, LPVOID lpBuffer,
    #   SIZE_T nSize, SIZE_T *lpNumberOfBytesRead);
    "ReadProcessMemory": (BOOL, [HANDLE, LPVOID, LPVOID, c_size_t, _PSIZE], _check_bool),
    # BOOL WriteProcessMemory(HANDLE hProcess, LPVOID lpBaseAddress, LPCVOID lpBuffer,
    #   SIZE_T nSize, SIZE_T *lpNumberOfBytesWritten);
    "WriteProcessMemory": (BOOL, [HANDLE, LPVOID, LPVOID, c_size_t, _PSIZE], _check_bool),
    # BOOL VirtualProtectEx(HANDLE hProcess, LPVOID lpAddress, SIZE_T dwSize,
    #   DWORD flNewProtect, PDWORD lpflOldProtect);
    "VirtualProtectEx": (BOOL, [HANDLE, LPVOID, c_size_t, DWORD, _PDWORD], _check_bool),
    # SIZE_T VirtualQueryEx(HANDLE hProcess, LPCVOID lpAddress,
    #   PMEMORY_BASIC_INFORMATION lpBuffer, SIZE_T dwLength);
    "VirtualQueryEx": (c_size_t, [HANDLE, LPVOID, POINTER(NATIVE.MEMORY_BASIC_INFORMATION),
                                  c_size_t], _check_nonzero),
    # BOOL FlushInstructionCache(HANDLE hProcess, LPCVOID lpBaseAddress, SIZE_T dwSize);
    "FlushInstructionCache": (BOOL, [HANDLE, LPVOID, c_size_t], _check_bool),
    # BOOL TerminateProcess(HANDLE hProcess, UINT uExitCode);
    "TerminateProcess": (BOOL, [HANDLE, c_uint32], _check_bool),
    # DWORD SuspendThread(HANDLE hThread);
    "SuspendThread": (DWORD, [HANDLE], _check_not_minus1),
    # DWORD ResumeThread(HANDLE hThread);
    "ResumeThread": (DWORD, [HANDLE], _check_not_minus1),
    # BOOL CloseHandle(HANDLE hObject);
    "CloseHandle": (BOOL, [HANDLE], _check_bool),
    # DWORD GetFinalPathNameByHandleW(HANDLE hFile, LPWSTR lpszFilePath,
    #   DWORD cchFilePath, DWORD dwFlags);
    "GetFinalPathNameByHandleW": (DWORD, [HANDLE, c_void_p, DWORD, DWORD], _check_nonzero),
    # HANDLE GetStdHandle(DWORD nStdHandle);  (NULL: no such handle, not an error)
    "GetStdHandle": (HANDLE, [DWORD], None),
    # HANDLE GetCurrentProcess(void);  (a pseudo-handle, cannot fail)
    "GetCurrentProcess": (HANDLE, [], None),
    # BOOL DuplicateHandle(HANDLE hSourceProcessHandle, HANDLE hSourceHandle,
    #   HANDLE hTargetProcessHandle, LPHANDLE lpTargetHandle, DWORD dwDesiredAccess,
    #   BOOL bInheritHandle, DWORD dwOptions);
    "DuplicateHandle": (BOOL, [HANDLE, HANDLE, HANDLE, POINTER(c_void_p), DWORD, BOOL, DWORD],
                        _check_bool),
    # HANDLE OpenProcess(DWORD dwDesiredAccess, BOOL bInheritHandle, DWORD dwProcessId);
    "OpenProcess": (HANDLE, [DWORD, BOOL, DWORD], _check_nonzero),
    # HANDLE OpenThread(DWORD dwDesiredAccess, BOOL bInheritHandle, DWORD dwThreadId);
    "OpenThread": (HANDLE, [DWORD, BOOL, DWORD], _check_nonzero),
}


_Function = Callable[..., Any]


class Kernel32:
    """The declared kernel32 functions as attributes (CreateProcessW, WaitForDebugEvent...).

    The backend only calls what is declared here; tests substitute any object
    with the same attribute names (a scripted stand-in)."""

    # One attribute per _PROTOTYPES entry (set in __init__), declared for the type checker.
    CreateProcessW: _Function
    DebugActiveProcess: _Function
    DebugActiveProcessStop: _Function
    DebugSetProcessKillOnExit: _Function
    WaitForDebugEvent: _Function
    ContinueDebugEvent: _Function
    GetThreadContext: _Function
    SetThreadContext: _Function
    Wow64GetThreadContext: _Function
    Wow64SetThreadContext: _Function
    IsWow64Process: _Function
    ReadProcessMemory: _Function
    WriteProcessMemory: _Function
    VirtualProtectEx: _Function
    VirtualQueryEx: _Function
    FlushInstructionCache: _Function
    TerminateProcess: _Function
    SuspendThread: _Function
    ResumeThread: _Function
    CloseHandle: _Function
    GetFinalPathNameByHandleW: _Function
    GetStdHandle: _Function
    GetCurrentProcess: _Function
    DuplicateHandle: _Function
    OpenProcess: _Function
    OpenThread: _Function

    def __init__(self, dll: Any) -> None:
        for name, (restype, argtypes, errcheck) in _PROTOTYPES.items():
            func = getattr(dll, name)
            func.restype = restype
            func.argtypes = argtypes
            if errcheck is not None:
                func.errcheck = errcheck
            setattr(self, name, func)


_kernel32: Kernel32 | None = None


def load_kernel32() -> Kernel32:
    """kernel32.dll with every prototype declared; loaded on first use, Windows only."""
    global _kernel32
    if _kernel32 is None:
        windll = getattr(ctypes, "WinDLL", None)
        if windll is None:
            raise DebuggerError("the Windows backend needs kernel32.dll (this is not Windows)")
        # use_last_error: ctypes saves GetLastError right after each call, before
        # anything else in the interpreter can overwrite it.
        _kernel32 = Kernel32(windll("kernel32", use_last_error=True))
    return _kernel32
