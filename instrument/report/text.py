"""Records as lines a person reads: time, event, where, then what the actions produced."""

from __future__ import annotations

import re
from typing import Any

from .stream import Flushing

# Control characters other than the newlines we lay out with: a target's strings
# (str(arg0), its stderr) must not drive the reader's terminal (colours, cursor, title).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")      # C0 but newline, DEL, C1

_SKIP = {"event", "code", "pid", "tid", "time", "message", "registers", "dump", "frames",
         "disassembly", "errors", "id", "hits", "address", "symbol", "type"}


def _frames(frames: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, f in enumerate(frames):
        where = f.get("symbol") or (f"{f.get('module')}+{f.get('offset')}" if f.get("module") else "??")
        module = f" ({f['module']})" if f.get("module") and f.get("symbol") else ""
        src = f" at {f['file']}:{f['line']}" if f.get("file") else ""
        how = f" [{f['method']}]" if f.get("method") else ""
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
    message = str(r["message"]).splitlines() if r.get("message") else []
    if len(message) == 1:              # one line of log: keep the record on one line
        head += f": {message[0]}"
        message = []
    lines = [head]
    lines += ["    " + line for line in message]
    if r.get("registers"):
        regs = list(r["registers"].items())
        for i in range(0, len(regs), 4):
            lines.append("    " + "  ".join(f"{k:>6}={v:<18}" for k, v in regs[i:i + 4]).rstrip())
    for d in r.get("dump") or []:
        lines.append(f"    dump {d['size']} bytes at {d['at']}: " + (d.get("file") or d.get("hex", "")))
    if r.get("frames"):
        lines += _frames(r["frames"])
    for ins in r.get("disassembly") or []:
        mark = "=>" if ins.get("fault") else "  "
        lines.append(f"  {mark} {ins['address']}: {ins['text']}")
    for e in r.get("errors") or []:
        lines.append(f"    error: {e}")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", "\n".join(lines))


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
