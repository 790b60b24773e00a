"""Records as lines a person reads: time, event, where, then what the actions produced."""

from __future__ import annotations

import re
from typing import Any

from .stream import Flushing

# Every control character of a value, newlines included, and the Unicode line and paragraph
# separators: a target's strings (str(arg0), its stderr, a symbol name) must neither drive the
# reader's terminal (colours, cursor, title) nor start a line that reads as a record of ours.
# Lines are escaped one by one, so the only newlines left are the ones we lay out with.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")      # C0, DEL, C1, U+2028/9


def _escaped(m: re.Match[str]) -> str:
    c = ord(m.group())
    return "\\n" if c == 10 else f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _escape(line: str) -> str:
    # Every character _CONTROL matches is unprintable (categories Cc, Zl, Zp), so a
    # printable line has none: the C test first, the regex only for the rest.
    return line if line.isprintable() else _CONTROL.sub(_escaped, line)


_SKIP = {"event", "code", "pid", "tid", "time", "message", "registers", "dump", "frames",
         "disassembly", "errors", "id", "hits", "address", "symbol", "type", "vars", "args", "locals"}


def _typed(value: Any, depth: int = 0) -> str:
    """A logged variable's JSON value the way C would write it: `{path = 0x4006 "/etc", len = 4}`."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.isidentifier() or value.startswith("... ") or value == "{...}" else repr(value)
    if isinstance(value, list):
        return "{" + ", ".join(_typed(v, depth + 1) for v in value) + "}"
    if isinstance(value, dict):
        if "pointer" in value:
            if "string" in value:
                return f"{value['pointer']} {value['string']!r}"
            if "value" in value:
                return f"{value['pointer']} -> {_typed(value['value'], depth + 1)}"
            return str(value["pointer"])
        return "{" + ", ".join(f"{k} = {_typed(v, depth + 1)}" for k, v in value.items()) + "}"
    return str(value)


def _frames(frames: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, f in enumerate(frames):
        where = f.get("symbol") or (f"{f.get('module')}+{f.get('offset')}" if f.get("module") else "??")
        module = f" ({f['module']})" if f.get("module") and f.get("symbol") else ""
        src = f" at {f['file']}:{f['line']}" if f.get("file") else ""
        how = f" [{f['method']}]" if f.get("method") else (" [inlined]" if f.get("inlined") else "")
        lines.append(f"    #{i:<2} {f.get('pc')} {where}{module}{src}{how}")
    return lines


MANY_BREAKPOINTS = 8      # past this (a symbol pattern's functions), breakpoints never hit are counted, not listed


def _hit_counts(counts: dict[str, int]) -> str:
    shown = counts if len(counts) <= MANY_BREAKPOINTS else {k: v for k, v in counts.items() if v}
    text = ", ".join(f"{k}={v}" for k, v in shown.items())
    idle = len(counts) - len(shown)
    return text + (f"{', ' if text else ''}{idle} more with no hits" if idle else "")


def format_record(r: dict[str, Any]) -> str:
    event = r.get("event")
    head = f"[{r.get('time', 0):9.4f}] {event}"
    if event in ("breakpoint", "return"):
        head += f" {r.get('id')} #{r.get('hits')} at {r.get('symbol') or r.get('address')}"
        if event == "return":
            head += f" -> {r.get('retval')}"
    elif event == "summary":
        bps = _hit_counts(r.get("breakpoints") or {})
        end = f"exit code {r['exit_code']}" if r.get("exit_code") is not None else (r.get("signal") or "")
        head += f" {r.get('ended')} {end}".rstrip() + (f"; hits: {bps}" if bps else "")
        if r.get("pinned"):
            head += "; pinned to one CPU"
        sc = r.get("syscalls")
        if isinstance(sc, dict):
            head += f"; system calls stopped by {sc.get('stops')}" + (f" ({sc['why']})" if sc.get("why") else "")
    elif event == "signal":
        sender = f" from pid {r['si_pid']}" if r.get("si_pid") is not None else ""
        value = f" value {r['si_value']}" if r.get("si_value") is not None else ""
        head += f" {r.get('signal')} #{r.get('hits')} ({r.get('si_code')}{sender}{value}) {r.get('disposition')}"
    elif event == "syscall":
        # As strace prints it: `openat(AT_FDCWD, "/etc/hostname", O_RDONLY) = 3`.
        args = ", ".join(str(v) for v in (r.get("args") or {}).values())
        head += f" {r.get('name')}({args})" + (f" = {r['result']}" if "result" in r else " ...")
        if r.get("skipped"):
            head += f" (skipped: returns {r.get('returned')})"
    elif event == "crash":
        head += f" {r.get('exception')} ({r.get('signal')}) at {r.get('symbol') or r.get('address')}"
        if r.get("fault_address"):
            head += f" {r.get('access') or 'access'} of {r['fault_address']}"
        c = r.get("classification")
        if c:
            head += f" — {c['class']} ({c['rule']})"
    else:
        extras = [f"{k}={v}" for k, v in r.items() if k not in _SKIP and v is not None and not isinstance(v, (dict, list))]
        head += f" (code {r.get('code')})" if r.get("code") is not None else ""
        if extras and not r.get("message"):    # a recipe's own message says what it wanted shown
            head += " " + " ".join(extras)
    if event != "summary":
        who = f"pid={r.get('pid')}" + (f" tid={r.get('tid')}" if r.get("tid") != r.get("pid") else "")
        head += f" [{who}]"
    if event == "crash":
        head += _where(r)
    if r.get("message"):               # on the record's line, its newlines escaped
        head += f": {r['message']}"
    lines = [head]
    if r.get("registers"):
        regs = list(r["registers"].items())
        for i in range(0, len(regs), 4):
            lines.append("    " + "  ".join(f"{k:>6}={v:<18}" for k, v in regs[i:i + 4]).rstrip())
    if not _BELOW.isdisjoint(r):        # (most hit records have none of these)
        _lines_below(r, lines)
    return "\n".join([line if line.isprintable() else _escape(line) for line in lines])


_BELOW = frozenset({"args", "locals", "vars", "dump", "frames", "disassembly", "errors"})


def _lines_below(r: dict[str, Any], lines: list[str]) -> None:
    """The lines under a record's first (and register) lines: variables, dumps, frames,
    disassembly, errors."""
    for field in ("args", "locals", "vars"):
        for name, value in (r.get(field) or {}).items():
            lines.append(f"    {name} = {_typed(value)}")
    for d in r.get("dump") or []:
        lines.append(f"    dump {d['size']} bytes at {d['at']}: " + (d.get("file") or d.get("hex", "")))
    if r.get("frames"):
        lines += _frames(r["frames"])
    for ins in r.get("disassembly") or []:
        mark = "=>" if ins.get("fault") else "  "
        lines.append(f"  {mark} {ins['address']}: {ins['text']}")
    for e in r.get("errors") or []:
        lines.append(f"    error: {e}")


class TextReporter(Flushing):
    def emit(self, record: dict[str, Any]) -> None:
        self.write(format_record(record) + "\n")


def _where(r: dict[str, Any]) -> str:
    """' in thread 2 (crasher) of child 1 (exe)': a crash record's attribution, briefly."""
    t, p = r.get("thread"), r.get("process")
    out = ""
    if isinstance(t, dict) and not t.get("main"):
        out += f" in thread {t.get('index')}" + (f" ({t['start_routine']})" if t.get("start_routine") else "")
    if isinstance(p, dict) and p.get("depth"):
        kind = "forked child" if p.get("forked_without_exec") else "child"
        out += f" of {kind} (depth {p['depth']}) {p.get('exe')}"
    return out
