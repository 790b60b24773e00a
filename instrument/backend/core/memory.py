"""The memory of a dumped process: the core's PT_LOAD bytes, and the mapped files for what the core left out.

The kernel writes anonymous and written-to private memory into the core but
leaves out file-backed pages it can read again (program text, read-only
data; coredump_filter's default 0x33), keeping only the first page of each
ELF mapping (its headers). Those bytes come from the file NT_FILE names, at
the mapping's file offset. A file whose build id is not the one the process
had mapped is not read (`refuse_file`): its code is another build's.
"""

from __future__ import annotations

import mmap
import os
from bisect import bisect_right
from typing import Callable

from ...errors import DebuggerError
from .elfcore import READ_FLAGS, CoreFile, MappedFile, Segment

# Where to read a mapped file from: the path in the core, or --exe for the program.
PathFor = Callable[[str], str]


class CoreMemory:
    """Reads of the dumped address space; never writes."""

    def __init__(self, core: CoreFile, path_for: PathFor) -> None:
        self._core = core
        self._segments: list[Segment] = core.segments
        self._starts = [s.vaddr for s in self._segments]
        self._files = sorted(core.files, key=lambda f: f.start)
        self._file_starts = [f.start for f in self._files]
        self._path_for = path_for
        self._opened: dict[str, mmap.mmap | None] = {}
        self._refused: set[str] = set()
        self.missing: set[str] = set()       # mapped files we needed and could not open

    def refuse_file(self, path: str) -> None:
        """Never read `path` (as the core names it) again: it is not the file that was mapped."""
        self._refused.add(path)

    def close(self) -> None:
        for data in self._opened.values():
            if data is not None:
                data.close()
        self._opened.clear()

    # -- reads ---------------------------------------------------------------------
    def read(self, address: int, size: int, *, dumped_only: bool = False) -> bytes:
        """`size` bytes at `address`; DebuggerError when any of them is not known.

        dumped_only: only bytes the core holds itself, never a mapped file's."""
        if size <= 0:
            return b""
        out = bytearray()
        at, end = address, address + size
        while at < end:
            chunk = self._from_core(at, end)
            if chunk is None and not dumped_only:
                chunk = self._from_file(at, end)
            if not chunk:
                raise DebuggerError(f"cannot read {size} bytes at {address:#x}: "
                                    f"{at:#x} is not in the core file{'' if dumped_only else ' nor in a mapped file'}")
            out += chunk
            at += len(chunk)
        return bytes(out)

    def _segment(self, address: int) -> Segment | None:
        i = bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        seg = self._segments[i]
        return seg if address < seg.vaddr + seg.memsz else None

    def _from_core(self, at: int, end: int) -> bytes | None:
        seg = self._segment(at)
        if seg is None or at >= seg.vaddr + seg.filesz:
            return None
        stop = min(end, seg.vaddr + seg.filesz)
        start = seg.offset + (at - seg.vaddr)
        return self._core.data[start:start + (stop - at)]

    def mapping(self, address: int) -> MappedFile | None:
        """The file mapping that holds `address`, if any."""
        i = bisect_right(self._file_starts, address) - 1
        if i < 0:
            return None
        mapped = self._files[i]
        return mapped if address < mapped.end else None

    def _from_file(self, at: int, end: int) -> bytes | None:
        mapped = self.mapping(at)
        if mapped is None or mapped.path in self._refused:
            return None
        data = self._open(mapped.path)
        if data is None:
            return None
        stop = min(end, mapped.end)
        # Stop where the core has bytes of its own again: this segment's end, or the next one's start.
        seg = self._segment(at)
        if seg is not None:
            stop = min(stop, seg.vaddr + seg.memsz)
        else:
            i = bisect_right(self._starts, at)
            if i < len(self._starts):
                stop = min(stop, self._starts[i])
        start = mapped.offset + (at - mapped.start)
        if start >= len(data):
            return None                   # past the end of the file: SIGBUS in the process
        return data[start:start + (stop - at)]

    def _open(self, path: str) -> mmap.mmap | None:
        if path in self._opened:
            return self._opened[path]
        data: mmap.mmap | None = None
        real = self._path_for(path)
        try:
            fd = os.open(real, READ_FLAGS)
            try:
                if os.fstat(fd).st_size:
                    data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            data = None
        if data is None:
            self.missing.add(real)
        self._opened[path] = data
        return data
