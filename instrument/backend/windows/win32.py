"""Small kernel32 conveniences for the backend: memory, protections, handles, process creation."""

from __future__ import annotations

import ctypes
import subprocess
from types import SimpleNamespace
from typing import Any, Callable

from . import _ffi


class Win32:
    """kernel32 calls with Python values in and out (and Win32Error on failure)."""

    def __init__(self, kernel32: Any, structs: SimpleNamespace) -> None:
        self.k = kernel32
        self.structs = structs

    def read(self, process: int, address: int, size: int) -> bytes | None:
        buf = ctypes.create_string_buffer(size)
        done = ctypes.c_size_t()
        try:
            self.k.ReadProcessMemory(process, address, buf, size, done)
        except _ffi.Win32Error:
            return None
        return buf.raw[:done.value]

    def write(self, process: int, address: int, data: bytes) -> None:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        done = ctypes.c_size_t()
        try:
            self.k.WriteProcessMemory(process, address, buf, len(data), done)
        except _ffi.Win32Error:
            # Code pages are PAGE_EXECUTE_READ: lift the protection for the write.
            old = self.protect(process, address, len(data), _ffi.PAGE_EXECUTE_READWRITE)
            try:
                self.k.WriteProcessMemory(process, address, buf, len(data), done)
            finally:
                self.protect(process, address, len(data), old)
        # x86 keeps its caches coherent, but the API asks for it (and ARM64 needs it).
        self.k.FlushInstructionCache(process, address, len(data))

    def protect(self, process: int, address: int, size: int, protection: int) -> int:
        """Set a protection; return the old one."""
        old = ctypes.c_uint32()
        self.k.VirtualProtectEx(process, address, size, protection, old)
        return int(old.value)

    def protector(self, process: int) -> Callable[[int, int, int], int]:
        """`protect` bound to one process: the guard book's Protect callback."""
        return lambda address, size, protection: self.protect(process, address, size, protection)

    def protection(self, process: int, address: int) -> int:
        mbi = self.structs.MEMORY_BASIC_INFORMATION()
        self.k.VirtualQueryEx(process, address, mbi, ctypes.sizeof(mbi))
        return int(mbi.Protect)

    def is_wow64(self, process: int) -> bool:
        if self.structs.pointer_size == 4:
            return False   # a 32-bit debugger sees 32-bit contexts natively
        flag = ctypes.c_int32()
        try:
            self.k.IsWow64Process(process, flag)
        except _ffi.Win32Error:
            return False
        return bool(flag.value)

    def final_path(self, handle: int) -> str | None:
        buf = ctypes.create_unicode_buffer(1024)
        try:
            n = self.k.GetFinalPathNameByHandleW(handle, buf, len(buf), 0)
            if n >= len(buf):   # too small: n is the size needed
                buf = ctypes.create_unicode_buffer(n + 1)
                self.k.GetFinalPathNameByHandleW(handle, buf, len(buf), 0)
        except _ffi.Win32Error:
            return None
        return buf.value

    def close(self, handle: int) -> None:
        """CloseHandle, ignoring failure: used on cleanup paths only."""
        if handle:
            try:
                self.k.CloseHandle(handle)
            except _ffi.Win32Error:
                pass

    def create_process(self, argv: tuple[str, ...], env: dict[str, str] | None, cwd: str | None,
                       stdin_path: str | None, flags: int) -> Any:
        """CreateProcessW; returns the PROCESS_INFORMATION."""
        si = self.structs.STARTUPINFOW()
        si.cb = ctypes.sizeof(si)
        pi = self.structs.PROCESS_INFORMATION()
        # CreateProcessW may write into the command line: it must be a mutable buffer.
        cmdline = ctypes.create_unicode_buffer(subprocess.list2cmdline(argv))
        copies = self._std_handles(si, stdin_path)
        try:
            self.k.CreateProcessW(None, cmdline, None, None, True,
                                  flags | _ffi.CREATE_UNICODE_ENVIRONMENT,
                                  environment_block(env), cwd, si, pi)
        finally:
            for handle in copies:
                self.close(handle)
        return pi

    def _std_handles(self, si: Any, stdin_path: str | None) -> list[int]:
        """Give the child inheritable copies of our std handles (stdin: a file if asked).

        Without STARTF_USESTDHANDLES a console child does not get pipe handles,
        and ours are not inheritable (PEP 446), so pass inheritable duplicates."""
        sources = [self.k.GetStdHandle(n) for n in
                   (_ffi.STD_INPUT_HANDLE, _ffi.STD_OUTPUT_HANDLE, _ffi.STD_ERROR_HANDLE)]
        stdin_file = None
        if stdin_path is not None:
            import msvcrt  # Windows only, like this code path
            # typeshed declares get_osfhandle on win32 only; the type checker runs anywhere.
            osfhandle: Callable[[int], int] = getattr(msvcrt, "get_osfhandle")
            stdin_file = open(stdin_path, "rb")
            sources[0] = osfhandle(stdin_file.fileno())
        copies: list[int] = []
        try:
            me = self.k.GetCurrentProcess()
            for source in sources:
                copy = ctypes.c_void_p()
                if source:
                    self.k.DuplicateHandle(me, source, me, copy, 0, True, _ffi.DUPLICATE_SAME_ACCESS)
                copies.append(copy.value or 0)
        finally:
            if stdin_file is not None:
                stdin_file.close()
        si.dwFlags |= _ffi.STARTF_USESTDHANDLES
        si.hStdInput, si.hStdOutput, si.hStdError = copies
        return [c for c in copies if c]


def environment_block(env: dict[str, str] | None) -> Any:
    """A CREATE_UNICODE_ENVIRONMENT block, sorted case-insensitively as Windows expects."""
    if env is None:
        return None
    items = sorted(env.items(), key=lambda kv: kv[0].upper())
    block = "".join(f"{k}={v}\0" for k, v in items) + "\0"
    return ctypes.create_unicode_buffer(block, len(block))
