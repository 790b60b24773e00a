"""Stack hashes: `major` over the top 5 frames, `minor` over the top 20, free of addresses and paths."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

MAJOR_DEPTH = 5
MINOR_DEPTH = 20
# How deep to look for the abort/signal machinery on top of the stack.
MACHINERY_DEPTH = 16

# Functions that only carry a fatal signal or a failed check up to the kernel:
# every crash that went through them would otherwise share their frames.
MACHINERY = frozenset({
    "raise", "abort", "gsignal", "__pthread_kill_implementation", "__pthread_kill_internal",
    "pthread_kill", "__pthread_kill", "__GI_raise", "__GI_abort", "__libc_message",
    "__libc_message_impl", "__fortify_fail", "__chk_fail", "__stack_chk_fail",
    "__stack_chk_fail_local", "malloc_printerr", "__malloc_assert", "__assert_fail",
    "__assert_fail_base", "__assert_perror_fail", "__restore_rt", "killpg", "kill", "tgkill",
})
_SANITIZER_PREFIXES = ("__asan", "__ubsan", "__sanitizer", "__interceptor", "__lsan", "__tsan", "__msan")
_SANITIZER_MODULES = ("libasan.", "libubsan.", "libtsan.", "liblsan.", "libmsan.", "libclang_rt.")
# Where glibc's machinery lives: its internal frames between abort() and the caller
# (malloc_printerr, _int_free: unnamed in the shipped libc, named by libc6-dbg's debug
# file) belong to the machinery too.
_LIBC_MODULES = ("libc.so", "libc-", "libpthread.so", "ld-linux")


def bare(symbol: str | None) -> str:
    """`read_value+0xc` -> `read_value`; `libc.so.6!abort+0x1a` -> `abort`."""
    if not symbol:
        return ""
    return symbol.rsplit("!", 1)[-1].split("+", 1)[0].strip()


def _basename(path: str | None) -> str:
    return (path or "").replace("\\", "/").rsplit("/", 1)[-1]


def _is_machinery(frame: Mapping[str, Any]) -> bool:
    name = bare(frame.get("symbol"))
    return name in MACHINERY or name.startswith(_SANITIZER_PREFIXES) \
        or _basename(frame.get("module")).startswith(_SANITIZER_MODULES)


def frame_key(frame: Mapping[str, Any]) -> str:
    """`module!symbol`, or `module+0xoffset` without a symbol; `?` for a pc in no module.

    Never an absolute address or a path: the module is its basename, the
    offset is relative to the module, so ASLR, PIE and a copied binary all
    give the same key."""
    module = _basename(frame.get("module"))
    name = bare(frame.get("symbol"))
    if name:
        return f"{module}!{name}" if module else name
    if module and frame.get("offset") is not None:
        return f"{module}+{frame['offset']}"
    return "?"


def significant_frames(frames: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The frames that identify the bug: the abort/signal machinery on top dropped, and
    the frames of inlined calls (their function is still named by its physical frame)."""
    top = [f for f in frames if not f.get("inlined")]
    last = max((i for i, f in enumerate(top[:MACHINERY_DEPTH]) if _is_machinery(f)), default=-1)
    if last >= 0:
        rest = top[last + 1:]
        # Named or not: libc6-dbg names them (_int_free), the shipped libc does not.
        while rest and (not bare(rest[0].get("symbol")) or rest[0].get("separate_debug")) \
                and _basename(rest[0].get("module")).startswith(_LIBC_MODULES):
            rest.pop(0)
        top = rest or top[last:]
    # A signal trampoline in the middle of the stack says nothing about the bug.
    return [f for f in top if bare(f.get("symbol")) != "__restore_rt"]


def _digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:16]


def as_shipped(frame: Mapping[str, Any]) -> Mapping[str, Any]:
    """The frame as the module file itself names it: a name that only its separate debug
    file gives (libc6-dbg's _int_free, a stripped program's functions) is left out."""
    if not frame.get("separate_debug"):
        return frame
    return {k: (None if k == "symbol" else v) for k, v in frame.items()}


def stack_hash(frames: Sequence[Mapping[str, Any]], crash: Mapping[str, Any] | None = None) -> dict[str, str]:
    """{major, minor} of a backtrace. Without frames, the crash site (module, symbol) stands in.

    Hashed as the module files name the frames (as_shipped), and without the frames of
    inlined calls (DWARF's, which a stripped file lacks), so one bug hashes the same on a
    machine with libc6-dbg installed and on one without; source lines never count."""
    keys = [frame_key(f) for f in significant_frames([as_shipped(f) for f in frames])]
    if not keys and crash is not None:
        keys = [frame_key({"module": crash.get("module"), "symbol": crash.get("symbol")}),
                str(crash.get("signal") or crash.get("exception") or "")]
    return {"major": _digest(keys[:MAJOR_DEPTH]), "minor": _digest(keys[:MINOR_DEPTH])}
