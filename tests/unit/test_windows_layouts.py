"""The ctypes Windows structures have exactly the layout mingw-w64's headers give them.

The expected numbers were printed by a C program built with mingw-w64 10.0.0
(x86_64 and i686) and run under wine 8.0 (shared/data/windows/layouts*.txt);
they are copied here so that a clone without shared/ still checks them. Where
a mingw cross compiler is installed, `_Static_assert`s generated from the
ctypes classes are also compiled against the real <windows.h>.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from instrument.backend.windows import _ffi
from instrument.events import EventCode, ExceptionCode

LAYOUT64: dict[str, tuple[int, int, dict[str, tuple[int, int]]]] = {
    'DEBUG_EVENT': (176, 8, {
        'dwDebugEventCode': (0, 4),
        'dwProcessId': (4, 4),
        'dwThreadId': (8, 4),
        'u': (16, 160),
    }),
    'EXCEPTION_DEBUG_INFO': (160, 8, {
        'ExceptionRecord': (0, 152),
        'dwFirstChance': (152, 4),
    }),
    'CREATE_THREAD_DEBUG_INFO': (24, 8, {
        'hThread': (0, 8),
        'lpThreadLocalBase': (8, 8),
        'lpStartAddress': (16, 8),
    }),
    'CREATE_PROCESS_DEBUG_INFO': (72, 8, {
        'hFile': (0, 8),
        'hProcess': (8, 8),
        'hThread': (16, 8),
        'lpBaseOfImage': (24, 8),
        'dwDebugInfoFileOffset': (32, 4),
        'nDebugInfoSize': (36, 4),
        'lpThreadLocalBase': (40, 8),
        'lpStartAddress': (48, 8),
        'lpImageName': (56, 8),
        'fUnicode': (64, 2),
    }),
    'EXIT_THREAD_DEBUG_INFO': (4, 4, {
    }),
    'EXIT_PROCESS_DEBUG_INFO': (4, 4, {
    }),
    'LOAD_DLL_DEBUG_INFO': (40, 8, {
        'hFile': (0, 8),
        'lpBaseOfDll': (8, 8),
        'dwDebugInfoFileOffset': (16, 4),
        'nDebugInfoSize': (20, 4),
        'lpImageName': (24, 8),
        'fUnicode': (32, 2),
    }),
    'UNLOAD_DLL_DEBUG_INFO': (8, 8, {
        'lpBaseOfDll': (0, 8),
    }),
    'OUTPUT_DEBUG_STRING_INFO': (16, 8, {
        'lpDebugStringData': (0, 8),
        'fUnicode': (8, 2),
        'nDebugStringLength': (10, 2),
    }),
    'RIP_INFO': (8, 4, {
        'dwError': (0, 4),
        'dwType': (4, 4),
    }),
    'EXCEPTION_RECORD': (152, 8, {
        'ExceptionCode': (0, 4),
        'ExceptionFlags': (4, 4),
        'ExceptionRecord': (8, 8),
        'ExceptionAddress': (16, 8),
        'NumberParameters': (24, 4),
        'ExceptionInformation': (32, 120),
    }),
    'EXCEPTION_RECORD32': (80, 4, {
        'ExceptionAddress': (12, 4),
        'NumberParameters': (16, 4),
        'ExceptionInformation': (20, 60),
    }),
    'EXCEPTION_RECORD64': (152, 8, {
        'ExceptionAddress': (16, 8),
        'NumberParameters': (24, 4),
        'ExceptionInformation': (32, 120),
    }),
    'CONTEXT': (1232, 16, {
        'P1Home': (0, 8),
        'P6Home': (40, 8),
        'ContextFlags': (48, 4),
        'MxCsr': (52, 4),
        'SegCs': (56, 2),
        'SegDs': (58, 2),
        'SegEs': (60, 2),
        'SegFs': (62, 2),
        'SegGs': (64, 2),
        'SegSs': (66, 2),
        'EFlags': (68, 4),
        'Dr0': (72, 8),
        'Dr1': (80, 8),
        'Dr2': (88, 8),
        'Dr3': (96, 8),
        'Dr6': (104, 8),
        'Dr7': (112, 8),
        'Rax': (120, 8),
        'Rcx': (128, 8),
        'Rdx': (136, 8),
        'Rbx': (144, 8),
        'Rsp': (152, 8),
        'Rbp': (160, 8),
        'Rsi': (168, 8),
        'Rdi': (176, 8),
        'R8': (184, 8),
        'R15': (240, 8),
        'Rip': (248, 8),
        'FltSave': (256, 512),
        'Xmm0': (416, 16),
        'VectorRegister': (768, 416),
        'VectorControl': (1184, 8),
        'DebugControl': (1192, 8),
        'LastBranchToRip': (1200, 8),
        'LastBranchFromRip': (1208, 8),
        'LastExceptionToRip': (1216, 8),
        'LastExceptionFromRip': (1224, 8),
    }),
    'XMM_SAVE_AREA32': (512, 16, {
    }),
    'M128A': (16, 16, {
    }),
    'WOW64_CONTEXT': (716, 4, {
        'ContextFlags': (0, 4),
        'Dr0': (4, 4),
        'Dr1': (8, 4),
        'Dr2': (12, 4),
        'Dr3': (16, 4),
        'Dr6': (20, 4),
        'Dr7': (24, 4),
        'FloatSave': (28, 112),
        'SegGs': (140, 4),
        'SegFs': (144, 4),
        'SegEs': (148, 4),
        'SegDs': (152, 4),
        'Edi': (156, 4),
        'Esi': (160, 4),
        'Ebx': (164, 4),
        'Edx': (168, 4),
        'Ecx': (172, 4),
        'Eax': (176, 4),
        'Ebp': (180, 4),
        'Eip': (184, 4),
        'SegCs': (188, 4),
        'EFlags': (192, 4),
        'Esp': (196, 4),
        'SegSs': (200, 4),
        'ExtendedRegisters': (204, 512),
    }),
    'WOW64_FLOATING_SAVE_AREA': (112, 4, {
    }),
    'MEMORY_BASIC_INFORMATION': (48, 8, {
        'BaseAddress': (0, 8),
        'AllocationBase': (8, 8),
        'AllocationProtect': (16, 4),
        'RegionSize': (24, 8),
        'State': (32, 4),
        'Protect': (36, 4),
        'Type': (40, 4),
    }),
    'MEMORY_BASIC_INFORMATION32': (28, 4, {
    }),
    'MEMORY_BASIC_INFORMATION64': (48, 16, {
        'AllocationProtect': (16, 4),
        'RegionSize': (24, 8),
        'State': (32, 4),
    }),
    'STARTUPINFOW': (104, 8, {
        'cb': (0, 4),
        'dwFlags': (60, 4),
        'wShowWindow': (64, 2),
        'hStdInput': (80, 8),
        'hStdError': (96, 8),
    }),
    'PROCESS_INFORMATION': (24, 8, {
        'hProcess': (0, 8),
        'hThread': (8, 8),
        'dwProcessId': (16, 4),
        'dwThreadId': (20, 4),
    }),
    'LDT_ENTRY': (8, 4, {
    }),
}
# Values the mingw headers give both architectures.
COMMON_CONSTANTS = {
    'EXCEPTION_MAXIMUM_PARAMETERS': 0xf,
    'DEBUG_PROCESS': 0x1,
    'DEBUG_ONLY_THIS_PROCESS': 0x2,
    'CREATE_NEW_CONSOLE': 0x10,
    'CREATE_SUSPENDED': 0x4,
    'DBG_CONTINUE': 0x10002,
    'DBG_EXCEPTION_NOT_HANDLED': 0x80010001,
    'DBG_REPLY_LATER': 0x40010001,
    'EXCEPTION_BREAKPOINT': 0x80000003,
    'EXCEPTION_SINGLE_STEP': 0x80000004,
    'EXCEPTION_GUARD_PAGE': 0x80000001,
    'EXCEPTION_ACCESS_VIOLATION': 0xc0000005,
    'STATUS_WX86_BREAKPOINT': 0x4000001f,
    'STATUS_WX86_SINGLE_STEP': 0x4000001e,
    'PAGE_NOACCESS': 0x1,
    'PAGE_READONLY': 0x2,
    'PAGE_READWRITE': 0x4,
    'PAGE_EXECUTE': 0x10,
    'PAGE_EXECUTE_READ': 0x20,
    'PAGE_EXECUTE_READWRITE': 0x40,
    'PAGE_GUARD': 0x100,
    'MEM_COMMIT': 0x1000,
    'MEM_IMAGE': 0x1000000,
    'THREAD_ALL_ACCESS': 0x1fffff,
    'THREAD_GET_CONTEXT': 0x8,
    'THREAD_SET_CONTEXT': 0x10,
    'THREAD_SUSPEND_RESUME': 0x2,
    'PROCESS_ALL_ACCESS': 0x1fffff,
    'EXCEPTION': 0x1,
    'CREATE_THREAD': 0x2,
    'CREATE_PROCESS': 0x3,
    'EXIT_THREAD': 0x4,
    'EXIT_PROCESS': 0x5,
    'LOAD_DLL': 0x6,
    'UNLOAD_DLL': 0x7,
    'OUTPUT_DEBUG_STRING': 0x8,
    'RIP': 0x9,
}
CONSTANTS64 = {**COMMON_CONSTANTS, **{
    'CONTEXT_AMD64': 0x100000,
    'CONTEXT_CONTROL': 0x100001,
    'CONTEXT_INTEGER': 0x100002,
    'CONTEXT_SEGMENTS': 0x100004,
    'CONTEXT_FLOATING_POINT': 0x100008,
    'CONTEXT_DEBUG_REGISTERS': 0x100010,
    'CONTEXT_FULL': 0x10000b,
    'CONTEXT_ALL': 0x10001f,
    'WOW64_CONTEXT_i386': 0x10000,
    'WOW64_CONTEXT_CONTROL': 0x10001,
    'WOW64_CONTEXT_INTEGER': 0x10002,
    'WOW64_CONTEXT_DEBUG_REGISTERS': 0x10010,
    'WOW64_CONTEXT_FULL': 0x10007,
    'WOW64_CONTEXT_ALL': 0x1003f,
}}
LAYOUT32: dict[str, tuple[int, int, dict[str, tuple[int, int]]]] = {
    'DEBUG_EVENT': (96, 4, {
        'dwDebugEventCode': (0, 4),
        'dwProcessId': (4, 4),
        'dwThreadId': (8, 4),
        'u': (12, 84),
    }),
    'EXCEPTION_DEBUG_INFO': (84, 4, {
        'ExceptionRecord': (0, 80),
        'dwFirstChance': (80, 4),
    }),
    'CREATE_THREAD_DEBUG_INFO': (12, 4, {
        'hThread': (0, 4),
        'lpThreadLocalBase': (4, 4),
        'lpStartAddress': (8, 4),
    }),
    'CREATE_PROCESS_DEBUG_INFO': (40, 4, {
        'hFile': (0, 4),
        'hProcess': (4, 4),
        'hThread': (8, 4),
        'lpBaseOfImage': (12, 4),
        'dwDebugInfoFileOffset': (16, 4),
        'nDebugInfoSize': (20, 4),
        'lpThreadLocalBase': (24, 4),
        'lpStartAddress': (28, 4),
        'lpImageName': (32, 4),
        'fUnicode': (36, 2),
    }),
    'EXIT_THREAD_DEBUG_INFO': (4, 4, {
    }),
    'EXIT_PROCESS_DEBUG_INFO': (4, 4, {
    }),
    'LOAD_DLL_DEBUG_INFO': (24, 4, {
        'hFile': (0, 4),
        'lpBaseOfDll': (4, 4),
        'dwDebugInfoFileOffset': (8, 4),
        'nDebugInfoSize': (12, 4),
        'lpImageName': (16, 4),
        'fUnicode': (20, 2),
    }),
    'UNLOAD_DLL_DEBUG_INFO': (4, 4, {
        'lpBaseOfDll': (0, 4),
    }),
    'OUTPUT_DEBUG_STRING_INFO': (8, 4, {
        'lpDebugStringData': (0, 4),
        'fUnicode': (4, 2),
        'nDebugStringLength': (6, 2),
    }),
    'RIP_INFO': (8, 4, {
        'dwError': (0, 4),
        'dwType': (4, 4),
    }),
    'EXCEPTION_RECORD': (80, 4, {
        'ExceptionCode': (0, 4),
        'ExceptionFlags': (4, 4),
        'ExceptionRecord': (8, 4),
        'ExceptionAddress': (12, 4),
        'NumberParameters': (16, 4),
        'ExceptionInformation': (20, 60),
    }),
    'EXCEPTION_RECORD32': (80, 4, {
        'ExceptionAddress': (12, 4),
        'NumberParameters': (16, 4),
        'ExceptionInformation': (20, 60),
    }),
    'EXCEPTION_RECORD64': (152, 8, {
        'ExceptionAddress': (16, 8),
        'NumberParameters': (24, 4),
        'ExceptionInformation': (32, 120),
    }),
    # The 32-bit CONTEXT is what x64 headers call WOW64_CONTEXT (same measured layout).
    'CONTEXT': LAYOUT64['WOW64_CONTEXT'],
    'FLOATING_SAVE_AREA': (112, 4, {
    }),
    'MEMORY_BASIC_INFORMATION': (28, 4, {
        'BaseAddress': (0, 4),
        'AllocationBase': (4, 4),
        'AllocationProtect': (8, 4),
        'RegionSize': (12, 4),
        'State': (16, 4),
        'Protect': (20, 4),
        'Type': (24, 4),
    }),
    'MEMORY_BASIC_INFORMATION32': (28, 4, {
    }),
    'MEMORY_BASIC_INFORMATION64': (48, 16, {
        'AllocationProtect': (16, 4),
        'RegionSize': (24, 8),
        'State': (32, 4),
    }),
    'STARTUPINFOW': (68, 4, {
        'cb': (0, 4),
        'dwFlags': (44, 4),
        'wShowWindow': (48, 2),
        'hStdInput': (56, 4),
        'hStdError': (64, 4),
    }),
    'PROCESS_INFORMATION': (16, 4, {
        'hProcess': (0, 4),
        'hThread': (4, 4),
        'dwProcessId': (8, 4),
        'dwThreadId': (12, 4),
    }),
    'LDT_ENTRY': (8, 4, {
    }),
}
CONSTANTS32 = {**COMMON_CONSTANTS, **{
    'CONTEXT_i386': 0x10000,
    'CONTEXT_CONTROL': 0x10001,
    'CONTEXT_INTEGER': 0x10002,
    'CONTEXT_SEGMENTS': 0x10004,
    'CONTEXT_FLOATING_POINT': 0x10008,
    'CONTEXT_DEBUG_REGISTERS': 0x10010,
    'CONTEXT_EXTENDED_REGISTERS': 0x10020,
    'CONTEXT_FULL': 0x10007,
    'CONTEXT_ALL': 0x1003f,
}}

TARGETS = {"64": (_ffi.STRUCTS64, LAYOUT64), "32": (_ffi.STRUCTS32, LAYOUT32)}
CASES = [(bits, name) for bits, (_, layout) in TARGETS.items() for name in layout]
FIELD_CASES = [(bits, name, field) for bits, name in CASES for field in TARGETS[bits][1][name][2]]


def declared_alignment(cls: type) -> int:
    # `_align_` (DECLSPEC_ALIGN(16)) is enforced by ctypes only from 3.13 on;
    # before that aligned_context() provides it, see test_aligned_context.
    return max(ctypes.alignment(cls), getattr(cls, "_align_", 0))


@pytest.mark.parametrize("bits, name", CASES)
def test_size_and_alignment(bits: str, name: str) -> None:
    ns, layout = TARGETS[bits]
    cls = getattr(ns, name)
    size, align, _ = layout[name]
    assert (ctypes.sizeof(cls), declared_alignment(cls)) == (size, align)


@pytest.mark.parametrize("bits, name, field", FIELD_CASES)
def test_field_offset_and_size(bits: str, name: str, field: str) -> None:
    ns, layout = TARGETS[bits]
    descriptor = getattr(getattr(ns, name), field)
    assert (descriptor.offset, descriptor.size) == layout[name][2][field]


@pytest.mark.parametrize("bits, union_size", [("64", 160), ("32", 84)])
def test_debug_event_union_size(bits: str, union_size: int) -> None:
    ns = TARGETS[bits][0]
    union_type = dict(ns.DEBUG_EVENT._fields_)["u"]
    assert (ns.DEBUG_EVENT.u.size, ctypes.sizeof(union_type)) == (union_size, union_size)


def _ffi_value(name: str, bits: str) -> int:
    if name in ("EXCEPTION", "CREATE_THREAD", "CREATE_PROCESS", "EXIT_THREAD", "EXIT_PROCESS",
                "LOAD_DLL", "UNLOAD_DLL"):
        return EventCode[name + "_DEBUG_EVENT"]
    if name in ("OUTPUT_DEBUG_STRING", "RIP"):
        return EventCode[name + "_EVENT"]
    if name.startswith("EXCEPTION_") and name != "EXCEPTION_MAXIMUM_PARAMETERS":
        return ExceptionCode[name.removeprefix("EXCEPTION_")]
    if bits == "32" and name.startswith("CONTEXT_"):
        name = "WOW64_" + name  # the i386 CONTEXT flags are the WOW64 ones
    return int(getattr(_ffi, name))


@pytest.mark.parametrize("bits, name", [(b, n) for b, c in (("64", CONSTANTS64), ("32", CONSTANTS32))
                                        for n in c])
def test_constants(bits: str, name: str) -> None:
    expected = (CONSTANTS64 if bits == "64" else CONSTANTS32)[name]
    assert _ffi_value(name, bits) == expected


def test_aligned_context_is_16_byte_aligned_and_zeroed() -> None:
    for _ in range(8):  # different allocations land at different skews
        ctx = _ffi.aligned_context()
        assert ctypes.addressof(ctx) % 16 == 0
        assert bytes(ctx) == bytes(ctypes.sizeof(_ffi.CONTEXT))


def test_native_structures_have_the_measured_layout_of_this_pythons_width() -> None:
    # NATIVE is what the kernel32 prototypes pass: on a 64-bit Python every structure
    # must have the x64 layout mingw measured (a 32-bit Python: the i386 one), handles
    # and pointers as wide as this Python's.
    width = ctypes.sizeof(ctypes.c_void_p)
    layout = LAYOUT64 if width == 8 else LAYOUT32
    for name, (size, _, fields) in layout.items():
        cls = getattr(_ffi.NATIVE, name)
        assert ctypes.sizeof(cls) == size, name
        for field, place in fields.items():
            descriptor = getattr(cls, field)
            assert (descriptor.offset, descriptor.size) == place, (name, field)
    assert _ffi.NATIVE.PROCESS_INFORMATION.hProcess.size == width
    assert _ffi.NATIVE.DEBUG_EVENT.u.size == (160 if width == 8 else 84)


# -- _Static_assert lines generated from the ctypes classes -------------------
def _fields(cls: type, base: int = 0) -> Iterator[tuple[str, int, int]]:
    """(C field name, offset, size) of each named field, through anonymous members."""
    anonymous = getattr(cls, "_anonymous_", ())
    for entry in cls._fields_:
        name, ftype = entry[0], entry[1]
        descriptor = getattr(cls, name)
        if name in anonymous:
            yield from _fields(ftype, base + descriptor.offset)
        elif not name.startswith("_"):
            yield name, base + descriptor.offset, descriptor.size


def static_asserts(ns: SimpleNamespace, layout: dict[str, Any]) -> str:
    lines = ["#include <windows.h>", "#include <stddef.h>"]
    for cname in layout:
        cls = getattr(ns, cname)
        lines.append(f'_Static_assert(sizeof({cname}) == {ctypes.sizeof(cls)}, "sizeof {cname}");')
        for field, offset, size in _fields(cls):
            lines.append(f'_Static_assert(offsetof({cname}, {field}) == {offset}, "{cname}.{field}");')
            lines.append(f'_Static_assert(sizeof((({cname} *)0)->{field}) == {size}, "sizeof {cname}.{field}");')
    return "\n".join(lines) + "\n"


def test_generated_asserts_cover_every_measured_field() -> None:
    for ns, layout in TARGETS.values():
        text = static_asserts(ns, layout)
        for cname, (size, _, fields) in layout.items():
            assert f"sizeof({cname}) == {size}," in text
            for field, (offset, _) in fields.items():
                assert f"offsetof({cname}, {field}) == {offset}," in text


COMPILERS = [(cc, bits) for cc, bits in (("x86_64-w64-mingw32-gcc", "64"), ("i686-w64-mingw32-gcc", "32"))
             if shutil.which(cc)]


if COMPILERS:  # defined only where a mingw-w64 cross compiler is installed (.ci/wine.sh installs one)
    @pytest.mark.parametrize("compiler, bits", COMPILERS)
    def test_static_asserts_compile_against_mingw_headers(compiler: str, bits: str, tmp_path: Path) -> None:
        ns, layout = TARGETS[bits]
        source = tmp_path / "layout_check.c"
        source.write_text(static_asserts(ns, layout))
        result = subprocess.run([compiler, "-fsyntax-only", "-std=c11", str(source)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
