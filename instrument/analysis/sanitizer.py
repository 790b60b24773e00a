"""Sanitizer builds: the environment that makes their reports end in SIGABRT, and the report parser."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

# Under a debugger the sanitizer must not handle the CPU faults itself: with
# handle_segv=0 (and friends) a wild pointer reaches us as the real SIGSEGV,
# with the faulting instruction intact, and gets the full analysis. What the
# sanitizer detects on its own (heap overflow, use after free, ...) it
# reports on stderr and then abort()s, which we catch. LeakSanitizer stops
# the world with ptrace, which fails under a tracer: leaks stay off.
ASAN_DEFAULTS = {"symbolize": "0", "handle_segv": "0", "handle_sigbus": "0", "handle_sigfpe": "0",
                 "handle_sigill": "0", "handle_abort": "0"}
ASAN_FORCED = {"abort_on_error": "1", "detect_leaks": "0"}
UBSAN_DEFAULTS = {"print_stacktrace": "0", "symbolize": "0"}
UBSAN_FORCED = {"halt_on_error": "1", "abort_on_error": "1"}
# MemorySanitizer (clang) exits with status 77 after its report unless told to abort.
MSAN_DEFAULTS = {"symbolize": "0", "handle_segv": "0", "handle_sigbus": "0", "handle_sigfpe": "0",
                 "handle_sigill": "0", "handle_abort": "0"}
MSAN_FORCED = {"abort_on_error": "1", "halt_on_error": "1"}

# ASan and the others report an ERROR; MemorySanitizer's report is a WARNING (that ends the program).
_ERROR = re.compile(r"^==\d+==\s*(?:ERROR: (\w+Sanitizer)|WARNING: (MemorySanitizer)): (.+?)"
                    r"(?: on (?:address|unknown address) (0x[0-9a-f]+).*)?$")
_SUMMARY = re.compile(r"^SUMMARY: (\w+Sanitizer): ([\w()-]+(?: [\w()-]+)*?)(?: \(|\s+\S+:\d+|$)")
_ACCESS = re.compile(r"^(READ|WRITE) of size (\d+) at (0x[0-9a-f]+)")
_RUNTIME = re.compile(r"^(\S+?:\d+(?::\d+)?): runtime error: (.+)$")


def _options(user: str | None, defaults: Mapping[str, str], forced: Mapping[str, str]) -> str:
    # Sanitizer options are parsed left to right and the last one wins.
    parts = [f"{k}={v}" for k, v in defaults.items()]
    if user:
        parts.append(user.strip(":"))
    parts += [f"{k}={v}" for k, v in forced.items()]
    return ":".join(parts)


def sanitizer_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with ASAN_OPTIONS and UBSAN_OPTIONS set for triage, keeping the user's other choices."""
    out = dict(env)
    out["ASAN_OPTIONS"] = _options(env.get("ASAN_OPTIONS"), ASAN_DEFAULTS, ASAN_FORCED)
    out["UBSAN_OPTIONS"] = _options(env.get("UBSAN_OPTIONS"), UBSAN_DEFAULTS, UBSAN_FORCED)
    out["MSAN_OPTIONS"] = _options(env.get("MSAN_OPTIONS"), MSAN_DEFAULTS, MSAN_FORCED)
    return out


def parse_report(lines: Iterable[str]) -> dict[str, Any] | None:
    """{tool, bug_type, access?, size?, address?, detail?, summary?} of the first sanitizer
    report in these stderr lines, or None when there is none."""
    found: dict[str, Any] | None = None
    for raw in lines:
        line = raw.rstrip()
        if found is None:
            m = _ERROR.match(line)
            if m:
                found = {"tool": m.group(1) or m.group(2), "bug_type": _bug_type(m.group(3))}
                if m.group(4):
                    found["address"] = m.group(4)
                continue
            m = _RUNTIME.match(line)
            if m:
                found = {"tool": "UndefinedBehaviorSanitizer", "bug_type": "undefined-behavior",
                         "detail": f"{m.group(2)} ({_basename_location(m.group(1))})"}
            continue
        m = _ACCESS.match(line)
        if m and "access" not in found:
            found.update(access=m.group(1).lower(), size=int(m.group(2)), address=m.group(3))
            continue
        m = _SUMMARY.match(line)
        if m:
            found["summary"] = line[len("SUMMARY: "):]
            if found["tool"] == "UndefinedBehaviorSanitizer":
                # gcc's runtime says undefined-behavior, clang's names the check
                # (signed-integer-overflow): the rules see one bug type, CASR's name the word.
                found["kind"] = _bug_type(m.group(2))
            else:
                found["bug_type"] = _bug_type(m.group(2))
            break
    return found


def _bug_type(text: str) -> str:
    """ASan's words for the bug, reduced to its usual bug-type name."""
    text = text.strip()
    if text.startswith("attempting double-free"):
        return "double-free"
    if text.startswith("attempting free on address which was not malloc"):
        return "bad-free"
    return text.split()[0] if text else "unknown"


def _basename_location(location: str) -> str:
    # The report names the source by the path it was compiled from: keep the
    # file name and line only, so reports do not depend on the build folder.
    return location.replace("\\", "/").rsplit("/", 1)[-1]


# `#3 0x55d5c2e1b2a5 in overflow_write (/tmp/triage_asan+0x12a5)`, with or without the
# `in NAME` (symbolize=0) and the `(module+offset)` (a symbolizer that found the source).
_FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+(?: in (.+?))?(?:\s+\((.+)\+(0x[0-9a-f]+)\))?"
                    r"(?: \(BuildId: \w+\))?\s*$")


def report_frames(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The first stack of the first sanitizer report in these stderr lines, as the crash
    record's frames of a live stop would be: for a sanitizer that exited after its report
    instead of aborting, the only stack left.

    The report prints each pc less one (the call, not the return address); a frame here
    gets the return address's offset and the symbol of the call, from the module's own
    ELF symbols as a live frame does, so both give the same stack hash."""
    frames: list[dict[str, Any]] = []
    started = False
    for raw in lines:
        line = raw.rstrip()
        if not started:
            started = bool(_ERROR.match(line) or _RUNTIME.match(line))
            continue
        m = _FRAME.match(line)
        if m is None:
            if frames:
                break
            continue
        frames.append(_frame(m.group(2), m.group(3), m.group(4)))
    return frames


def _frame(name: str | None, path: str | None, offset: str | None) -> dict[str, Any]:
    from ..symbols.elf import ImageError, open_image

    if name and " " in name:          # `name path/file.c:8:5`: the name alone
        name = name.split(" ", 1)[0]
    frame: dict[str, Any] = {"pc": None, "module": _basename_location(path) if path else None,
                             "offset": None, "symbol": name}
    if path and offset:
        call = int(offset, 16)
        frame["offset"] = hex(call + 1)
        try:
            image = open_image(path)
            hit = image.symbolize_from(call + (image.extent[0] & ~0xFFF))
        except ImageError:
            hit = None
        if hit is not None:
            frame["symbol"] = f"{hit[0]}+{hit[1] + 1:#x}"
            if hit[2]:      # only the debug file names it: left out of the hash, as live frames
                frame["separate_debug"] = True
    return frame
