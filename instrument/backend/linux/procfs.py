"""Readers of /proc/PID: memory maps, thread list, auxv, exe, signal dispositions."""

from __future__ import annotations

import os
import signal
import struct
from dataclasses import dataclass

AT_PHDR = 3
AT_BASE = 7
AT_ENTRY = 9

# Default actions that do not end the process (signal(7)): ignore, stop, continue.
_HARMLESS_DEFAULT = frozenset({
    signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT,
    signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
})
# Raised by the CPU: the kernel (force_sig_fault) resets an ignored or blocked
# disposition to SIG_DFL for these, so SigIgn does not save the process.
_SYNCHRONOUS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP})


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    path: str


def live_task(pid: int) -> int:
    """The task whose /proc files stand for process pid: pid itself, or a live thread of
    it when its leader is a zombie (the main thread called pthread_exit: its maps, auxv,
    exe and mem read empty, while /proc/TID/ of any other thread shows the process)."""
    state = task_state(pid, pid)
    if state not in ("Z", "X"):
        return pid
    return next((tid for tid in tasks(pid) if task_state(pid, tid) not in (None, "Z", "X")), pid)


def _read(pid: int, name: str) -> bytes:
    """/proc/PID/name, through a live thread when the leader is a zombie (see live_task)."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            data = f.read()
    except OSError:
        if (live := live_task(pid)) == pid:
            raise
        data = b""
    if not data and (live := live_task(pid)) != pid:
        with open(f"/proc/{live}/{name}", "rb") as f:
            data = f.read()
    return data


def maps(pid: int) -> list[Mapping]:
    result: list[Mapping] = []
    for raw in _read(pid, "maps").splitlines():
        parts = raw.decode("utf-8", "replace").split(None, 5)
        lo, hi = parts[0].split("-")
        path = parts[5] if len(parts) > 5 else ""
        result.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), path))
    return result


def mapping_at(pid: int, address: int) -> Mapping | None:
    for m in maps(pid):
        if m.start <= address < m.end:
            return m
    return None


def tasks(pid: int) -> list[int]:
    """The thread ids of pid, from /proc/PID/task ([] when the process is gone)."""
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return []


def auxv(pid: int) -> dict[int, int]:
    """The ELF auxiliary vector the kernel gave the process at exec (AT_* -> value)."""
    data = _read(pid, "auxv")
    result: dict[int, int] = {}
    for key, value in struct.iter_unpack("<QQ", data[: len(data) // 16 * 16]):
        if key == 0:
            break
        result[key] = value
    return result


def exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        if (live := live_task(pid)) == pid:
            raise
        return os.readlink(f"/proc/{live}/exe")     # a zombie leader's (see live_task)


def cmdline(pid: int) -> list[str] | None:
    """/proc/PID/cmdline as argv; None when it is gone (or a zombie's, empty)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw.decode("utf-8", "replace").rstrip("\0").split("\0") if raw else None


def comm(pid: int, tid: int) -> str | None:
    """A thread's name (/proc/PID/task/TID/comm); None when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/comm", "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def status(pid: int, tid: int | None = None) -> dict[str, str]:
    """/proc/PID/status (or the thread's own, which has its own SigBlk) as key -> text."""
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    result: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            result[key] = value.strip()
    return result


def _has(mask_hex: str, signo: int) -> bool:
    return bool(int(mask_hex, 16) >> (signo - 1) & 1)


def signal_is_fatal(pid: int, tid: int, signo: int) -> bool:
    """Whether delivering signo to tid ends the process: no handler installed and a
    terminate/core default action (what makes an exception "last chance")."""
    if signo in _HARMLESS_DEFAULT:
        return False
    try:
        st = status(pid, tid)
    except OSError:
        return True
    caught = _has(st.get("SigCgt", "0"), signo)
    blocked = _has(st.get("SigBlk", "0"), signo)
    if signo in _SYNCHRONOUS:
        return not caught or blocked
    if caught or _has(st.get("SigIgn", "0"), signo):
        return False
    return True


def signal_caught(pid: int, tid: int, signo: int) -> bool:
    """Whether delivering signo to tid now runs a handler of the program's (installed,
    and not blocked in the thread)."""
    try:
        st = status(pid, tid)
    except OSError:
        return False
    return _has(st.get("SigCgt", "0"), signo) and not _has(st.get("SigBlk", "0"), signo)


def is_alive(pid: int) -> bool:
    try:
        if status(pid).get("State", "Z")[0] not in "ZX":
            return True
    except OSError:
        return False
    # A zombie leader: the process lives on while another thread does (its main thread
    # called pthread_exit).
    return any(task_state(pid, tid) not in (None, "Z", "X") for tid in tasks(pid))


def task_state(pid: int, tid: int) -> str | None:
    """The one-letter state of thread `tid` (R, S, D, Z, t, ...); None when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    end = data.rfind(b")")          # (the command name may hold spaces and parentheses)
    return chr(data[end + 2]) if 0 <= end and len(data) > end + 2 else None


def is_dying(pid: int) -> bool:
    """Gone, or going: a SIGKILL (from outside, or a fatal group exit) pending in any of
    its threads. Such a process still shows its threads as running or traced for a
    moment while the kernel takes them down, and its memory may already be gone."""
    if not is_alive(pid):
        return True
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for tid in tids:
        try:
            st = status(pid, int(tid))
        except OSError:
            continue            # that thread has exited already
        if _has(st.get("SigPnd", "0"), signal.SIGKILL) or _has(st.get("ShdPnd", "0"), signal.SIGKILL):
            return True
    return False


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (children, their children, ...), parents first.
    Read from each /proc/N/stat: this kernel has no /proc/N/task/N/children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue            # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


_NR_CLONE, _NR_VFORK, _NR_CLONE3 = 56, 58, 435       # x86-64
_CLONE_VFORK = 0x4000


def in_vfork(pid: int, tid: int) -> bool:
    """Whether thread `tid` sits in vfork (vfork, or clone/clone3 with CLONE_VFORK, as
    posix_spawn does) waiting for its child to exec or exit: deaf to PTRACE_INTERRUPT
    until then. Read from /proc/PID/task/TID/syscall ("NR arg0 ...", or "running" for a
    thread in user code); clone3's flags are the first word of the struct it points to."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            fields = f.read().split()
        nr = int(fields[0])
        arg0 = int(fields[1], 16) if len(fields) > 1 else 0
        if nr == _NR_VFORK:
            return True
        if nr == _NR_CLONE:
            return bool(arg0 & _CLONE_VFORK)
        if nr == _NR_CLONE3:
            with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
                mem.seek(arg0)
                return bool(int.from_bytes(mem.read(8), "little") & _CLONE_VFORK)
    except (OSError, ValueError, IndexError, OverflowError):
        pass              # gone, running, or not a clone at all
    return False
