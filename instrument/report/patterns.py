"""`instrument explain` for symbol patterns: what each one matches, and what it expanded to on disk."""

from __future__ import annotations

from typing import Any, Callable

SHOWN = 40        # expansions listed per pattern; the rest are counted


def explain_patterns(plan: Any, actions: Callable[[Any, str], list[str]]) -> list[str]:
    """Lines for the plan's patterns (none when it has none); `actions` formats an action list."""
    patterns = plan.patterns.patterns if plan.patterns else ()
    if not patterns:
        return []
    out = ["", f"symbol patterns ({len(patterns)}), one breakpoint per function they match:"]
    for p in patterns:
        t = p.template
        kind = t.type + (f" {t.access}" if t.type != "soft" else "")
        pattern = p.pattern
        if getattr(p, "line_spec", False):
            scope = "each function with code for that line (inlined copies)"
        elif pattern.is_program:
            scope = "the program's functions"
        elif pattern.module_is_glob:
            scope = f"the functions of every module matching '{pattern.module}', as each loads"
        else:
            scope = f"the functions of {pattern.module}, when it loads"
        out.append(f"  {p.id}: {kind} at {pattern.text} -> {scope} (at most {p.max_matches})"
                   + ("" if t.enabled else " [disabled]"))
        if getattr(p, "note", None):
            out.append(f"    note: {p.note}")
        if p.searched:
            out.append(f"    on disk: {len(p.preview)} in " + ", ".join(p.searched))
            for e in p.preview[:SHOWN]:
                symbol = e.at.split("!", 1)[-1]
                out.append(f"      {e.id}  at 0x{e.address:x}" + (f" ({symbol})" if symbol != e.function else ""))
            if len(p.preview) > SHOWN:
                out.append(f"      ... and {len(p.preview) - SHOWN} more")
        else:
            out.append("    on disk: nothing to check yet (expanded as the modules load)")
        if t.when is not None:
            out.append(f"    when {t.when.text}")
        if t.limit is not None:
            out.append(f"    limit {t.limit} per function")
        out += actions(t.actions, "    ")
        if t.on_return is not None:
            out.append("    on return:")
            out += actions(t.on_return, "      ")
    return out
