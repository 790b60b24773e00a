"""Which thread and which process a crash happened in, described without raw ids (issue 16).

Pids and tids differ from run to run; a thread's index in creation order within its
process, its start routine and a process's depth, exe and argv do not, so these are
what triage may hash and merge. Raw ids stay in the record's `pid`/`tid` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .process import ProcessState

# glibc's thread trampoline: the frame it calls is the pthread start_routine (and
# musl's). The main thread's routine is `main` when the backtrace reaches it.
_TRAMPOLINES = frozenset({"start_thread", "start", "__pthread_start"})
# The C runtime's modules: the outer frames of a thread (start_thread, clone3) live there.
_RUNTIME = ("libc.so", "libc-", "libpthread", "ld-musl", "libc.musl")


def _bare(symbol: str | None) -> str:
    return (symbol or "").split("+", 1)[0].split("@", 1)[0]


def _runtime(frame: dict[str, Any]) -> bool:
    name = Path(str(frame.get("module") or "")).name
    return name.startswith(_RUNTIME)


def start_routine(frames: Sequence[dict[str, Any]], main: bool, limit: int) -> str | None:
    """The function the thread started in, read off its backtrace: the frame called by
    the thread trampoline (by name where libc has symbols; else the innermost frame
    called from the C runtime at the outer end of the stack), or `main` for the main
    thread. A backtrace cut at `limit` frames has lost its outer end: None."""
    frames = [f for f in frames if not f.get("inlined")]     # the limit counts real frames
    names = [_bare(f.get("symbol")) for f in frames]
    if main:
        return "main" if "main" in names else None
    for i, name in enumerate(names[1:], 1):
        if name in _TRAMPOLINES and names[i - 1]:
            return names[i - 1]
    if not frames or len(frames) >= limit:
        return None
    i = len(frames)
    while i > 0 and _runtime(frames[i - 1]):
        i -= 1
    return names[i - 1] or None if 0 < i < len(frames) else None


def thread_of(process: ProcessState, tid: int, frames: Sequence[dict[str, Any]], limit: int = 32) -> dict[str, Any]:
    """The crash record's `thread`: {index, main, start_routine, name}."""
    index = process.threads.index(tid) if tid in process.threads else None
    main = tid == process.pid or index == 0
    name = process.backend.thread_name(process.pid, tid)   # None where the backend cannot tell
    return {"index": 0 if main else index, "main": main,
            "start_routine": start_routine(frames, main, limit),
            "name": name}


def process_of(process: ProcessState) -> dict[str, Any]:
    """The crash record's `process`: {depth, exe, argv, parent_exe, forked_without_exec}."""
    argv = process.backend.command_line(process.pid)
    return {"depth": process.depth, "exe": process.image_path or None, "argv": argv,
            "parent_exe": process.parent_exe, "forked_without_exec": process.forked_without_exec}
