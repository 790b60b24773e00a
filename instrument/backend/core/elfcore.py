"""Parsing a Linux x86-64 ELF core file into plain values: threads, signal, auxv, mapped files, memory segments.

Struct layouts (the kernel's include/uapi/linux/elfcore.h and
arch/x86/include/asm/elf.h, x86-64; gdb writes the same ones):

    struct elf_prstatus {          struct elf_prpsinfo {
      struct elf_siginfo pr_info;  //  0     char pr_state, pr_sname, pr_zomb, pr_nice;  // 0
      short pr_cursig;             // 12     unsigned long pr_flag;                      // 8
      unsigned long pr_sigpend;    // 16     uid_t pr_uid; gid_t pr_gid;                 // 16
      unsigned long pr_sighold;    // 24     pid_t pr_pid, pr_ppid, pr_pgrp, pr_sid;     // 24
      pid_t pr_pid, pr_ppid, pr_pgrp, pr_sid;  // 32    char pr_fname[16];               // 40
      struct timeval pr_utime, pr_stime, pr_cutime, pr_cstime;  // 48  char pr_psargs[80]; // 56
      elf_gregset_t pr_reg;        // 112: struct user_regs_struct, 27 u64
      int pr_fpvalid; };           // 328
    NT_SIGINFO: a siginfo_t (si_signo, si_errno, si_code, pad; si_addr or si_pid at 16)
    NT_FILE: long count, page_size; {long start, end, file_ofs (in pages)}[count]; char names[]
    NT_AUXV: {u64 a_type, a_val}[] ending with AT_NULL

gdb's generate-core-file writes an NT_SIGINFO after every thread's
NT_PRSTATUS and a page_size of 1 in NT_FILE; the kernel writes one NT_SIGINFO
after the dumping thread's NT_PRSTATUS, which comes first.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field

from ...errors import TargetError
from ...arch.x86_64 import USER_REGS_FIELDS

ET_CORE = 4
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF              # e_phnum escape: the count is in section header 0's sh_info
NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_AUXV = 6
NT_SIGINFO = 0x53494749       # "SIGI"
NT_FILE = 0x46494C45          # "FILE"
AT_PHDR, AT_PHNUM, AT_BASE, AT_ENTRY = 3, 5, 7, 9
# Cores read on any host (HOUSE rule 2): O_CLOEXEC is POSIX only, O_BINARY Windows only.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_NOTE = struct.Struct("<III")
_PRSTATUS_SIZE = 336
_PRSTATUS_REGS = 112
_GREGS = struct.Struct(f"<{len(USER_REGS_FIELDS)}Q")
_ET_NAMES = {0: "an unknown kind", 1: "a relocatable object", 2: "an executable", 3: "a shared object or PIE executable"}
# What compressed cores start with (systemd-coredump stores them so): a clear error, not "not ELF".
_COMPRESSED = {b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ": "xz", b"\x04\x22\x4d\x18": "lz4", b"\x1f\x8b": "gzip"}


@dataclass(frozen=True)
class ThreadState:
    """One thread of the dumped process: its tid, the signal it was stopped for, its registers."""

    tid: int
    cursig: int
    registers: dict[str, int]


@dataclass(frozen=True)
class SigInfo:
    """The signal that ended the process (NT_SIGINFO, or pr_cursig where the core has none)."""

    signo: int
    code: int
    errno: int
    addr: int               # si_addr: meaningful for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP
    sender_pid: int | None  # si_pid, for a signal another process sent (si_code <= 0)


@dataclass(frozen=True)
class MappedFile:
    """One file-backed mapping (NT_FILE): [start, end) maps `path` from byte `offset`."""

    start: int
    end: int
    offset: int
    path: str


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD: [vaddr, vaddr+memsz) of which the first `filesz` bytes are in the core at `offset`."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int


@dataclass
class CoreFile:
    """A parsed core file; `data` is the mmap of the whole file (close() releases it)."""

    path: str
    data: mmap.mmap
    segments: list[Segment]
    threads: list[ThreadState]          # the crashing thread first
    siginfo: SigInfo | None
    auxv: dict[int, int]
    files: list[MappedFile]
    pid: int
    program_name: str                   # pr_fname: the comm, at most 15 characters
    arguments: str                      # pr_psargs: the command line, cut at 80 characters
    crashed_tid: int | None = None      # the thread the signal belongs to
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.data.close()


def _bad(path: str, what: str) -> TargetError:
    return TargetError(f"{path}: {what}")


def open_core_file(path: str) -> CoreFile:
    """Parse the core file at `path`. Raises TargetError (exit 3) with one line saying what is wrong."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as e:
        raise _bad(path, f"cannot read the core file ({e.strerror or e})") from None
    try:
        size = os.fstat(fd).st_size
        if size < _EHDR.size:
            raise _bad(path, "not a core file (too short for an ELF header)")
        data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise _bad(path, f"cannot map the core file ({e.strerror or e})") from None
    finally:
        os.close(fd)
    try:
        return _parse(path, data)
    except BaseException:
        data.close()
        raise


def _parse(path: str, data: mmap.mmap) -> CoreFile:
    head = data[:_EHDR.size]
    if head[:4] != b"\x7fELF":
        kind = next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)), None)
        if kind is not None:
            raise _bad(path, f"a {kind}-compressed file: decompress the core first "
                             f"(`coredumpctl dump -o FILE`, or `{kind} -d`)")
        raise _bad(path, "not a core file (no ELF header)")
    (ident, e_type, e_machine, _version, _entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize,
     e_phnum, _shentsize, _shnum, _shstrndx) = _EHDR.unpack(head)
    if ident[4] != 2 or ident[5] != 1:
        raise _bad(path, "not a 64-bit little-endian ELF file; only x86-64 cores are read")
    if e_type != ET_CORE:
        hint = "; triage a program with `instrument triage -- PROGRAM`" if e_type in (2, 3) else ""
        raise _bad(path, f"not a core file: it is {_ET_NAMES.get(e_type, f'ELF type {e_type}')}{hint}")
    if e_machine != EM_X86_64:
        raise _bad(path, f"a core of machine {e_machine}; only x86-64 (62) cores are read")
    if e_phnum == PN_XNUM:
        e_phnum = _extended_phnum(path, data, e_shoff)
    if e_phentsize != _PHDR.size or e_phoff + e_phnum * _PHDR.size > len(data):
        raise _bad(path, "truncated or corrupt core file (program headers out of the file)")
    segments: list[Segment] = []
    notes: list[tuple[int, int]] = []
    for i in range(e_phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = \
            _PHDR.unpack_from(data, e_phoff + i * _PHDR.size)
        if p_type == PT_LOAD:
            # A core cut short (RLIMIT_CORE, a full disk) keeps what it has.
            available = max(0, min(p_filesz, len(data) - p_offset))
            segments.append(Segment(p_vaddr, p_memsz, p_offset, available, p_flags))
        elif p_type == PT_NOTE:
            if p_offset + p_filesz > len(data):
                raise _bad(path, "truncated core file (its notes are cut off)")
            notes.append((p_offset, p_filesz))
    if not notes:
        raise _bad(path, "corrupt core file (no PT_NOTE segment: no registers)")
    segments.sort(key=lambda s: s.vaddr)
    core = CoreFile(path, data, segments, [], None, {}, [], 0, "", "")
    for offset, length in notes:
        _read_notes(core, data, offset, length)
    if not core.threads:
        raise _bad(path, "corrupt core file (no NT_PRSTATUS: no thread registers)")
    _pick_crashed_thread(core)
    return core


def _extended_phnum(path: str, data: mmap.mmap, e_shoff: int) -> int:
    # More than 65534 mappings: section header 0 carries the real count in sh_info.
    if not e_shoff or e_shoff + 64 > len(data):
        raise _bad(path, "corrupt core file (PN_XNUM without a section header)")
    return int(struct.unpack_from("<I", data, e_shoff + 44)[0])


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _read_notes(core: CoreFile, data: mmap.mmap, offset: int, length: int) -> None:
    end = offset + length
    pos = offset
    pending_siginfo_for: int | None = None
    while pos + _NOTE.size <= end:
        namesz, descsz, n_type = _NOTE.unpack_from(data, pos)
        name_at = pos + _NOTE.size
        desc_at = name_at + _align4(namesz)
        pos = desc_at + _align4(descsz)
        if pos > end + 3:
            raise _bad(core.path, "corrupt core file (a note runs past its segment)")
        name = bytes(data[name_at:name_at + namesz]).rstrip(b"\0")
        desc = bytes(data[desc_at:desc_at + descsz])
        if name != b"CORE":
            continue
        if n_type == NT_PRSTATUS:
            thread = _prstatus(core.path, desc)
            core.threads.append(thread)
            pending_siginfo_for = thread.tid
        elif n_type == NT_SIGINFO and len(desc) >= 24:
            # The first NT_SIGINFO is the signal's: the kernel writes one, after the
            # dumping thread; gdb one per thread, the signalled thread's first.
            if core.siginfo is None:
                core.siginfo = _siginfo(desc)
                core.crashed_tid = pending_siginfo_for
        elif n_type == NT_PRPSINFO and len(desc) >= 136:
            core.pid = struct.unpack_from("<i", desc, 24)[0]
            core.program_name = _cstring(desc[40:56])
            core.arguments = _cstring(desc[56:136]).strip()
        elif n_type == NT_AUXV:
            for i in range(0, len(desc) - 15, 16):
                key, value = struct.unpack_from("<QQ", desc, i)
                if key == 0:
                    break
                core.auxv[key] = value
        elif n_type == NT_FILE:
            core.files = _nt_file(core.path, desc)


def _prstatus(path: str, desc: bytes) -> ThreadState:
    if len(desc) < _PRSTATUS_SIZE - 8:
        raise _bad(path, f"corrupt core file (an NT_PRSTATUS of {len(desc)} bytes; x86-64 has {_PRSTATUS_SIZE})")
    cursig = struct.unpack_from("<h", desc, 12)[0]
    tid = struct.unpack_from("<i", desc, 32)[0]
    values = _GREGS.unpack_from(desc, _PRSTATUS_REGS)
    return ThreadState(tid, cursig, dict(zip(USER_REGS_FIELDS, values)))


def _siginfo(desc: bytes) -> SigInfo:
    signo, errno, code = struct.unpack_from("<iii", desc, 0)
    addr = struct.unpack_from("<Q", desc, 16)[0]
    sender = struct.unpack_from("<i", desc, 16)[0] if code <= 0 else None
    return SigInfo(signo, code, errno, addr, sender)


def _nt_file(path: str, desc: bytes) -> list[MappedFile]:
    if len(desc) < 16:
        return []
    count, page_size = struct.unpack_from("<QQ", desc, 0)
    table_end = 16 + 24 * count
    if table_end > len(desc):
        raise _bad(path, "corrupt core file (NT_FILE lists more mappings than it holds)")
    names = desc[table_end:].split(b"\0")
    files = []
    for i in range(count):
        start, end, pages = struct.unpack_from("<QQQ", desc, 16 + 24 * i)
        name = names[i].decode("utf-8", "surrogateescape") if i < len(names) else ""
        files.append(MappedFile(start, end, pages * page_size, name))
    return files


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pick_crashed_thread(core: CoreFile) -> None:
    """Put the thread the signal belongs to first: the one whose NT_PRSTATUS the signal's
    NT_SIGINFO follows; without NT_SIGINFO, the first with a signal (pr_cursig)."""
    tid = core.crashed_tid
    if tid is None:
        tid = next((t.tid for t in core.threads if t.cursig), core.threads[0].tid)
        first = next(t for t in core.threads if t.tid == tid)
        if core.siginfo is None and first.cursig:
            # An old kernel (before 3.7) writes no NT_SIGINFO: the signal number is all there is.
            core.siginfo = SigInfo(first.cursig, 0x80, 0, 0, None)
    core.crashed_tid = tid
    core.threads.sort(key=lambda t: t.tid != tid)
    if not core.pid:
        # No NT_PRPSINFO: the leader's tid is the pid, and the lowest (tids are handed out upwards).
        core.pid = min(t.tid for t in core.threads)
