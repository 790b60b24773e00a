"""`instrument explain`: the compiled handler table and breakpoint plan, for a person."""

from __future__ import annotations

from typing import Any

from ..arch.x86_64 import Abi
from ..compiler.resolve import ANY_LIBRARY
from ..compiler.sampling import can_sample, choose_sampled, watches_data
from ..events import EventCode, exception_name
from .patterns import explain_patterns


def _actions(actions: Any, indent: str) -> list[str]:
    return [f"{indent}- {a.describe}" for a in actions] or [f"{indent}(no actions)"]


# How a sampled breakpoint of each type reports its hits (backend/linux/perfbp.py, uprobes.py).
_SAMPLED_HOW = {
    "hardware": "by a perf breakpoint event per thread (no debug register stop), registers in a ring buffer",
    "soft": "by a uprobe perf event on the instruction's file and offset (no int3 byte in the target, "
            "no stop), registers in per-CPU ring buffers; where perf refuses, an int3 and the summary says why",
}


def explain(plan: Any, sampled_registers: frozenset[str] = frozenset(), abi: Abi = Abi.SYSV,
            sampled_soft: bool = False) -> str:
    """The plan for a person; `sampled_registers`/`abi`: the backend's (Capabilities),
    to say which hardware breakpoints will not stop the target, for a plan compiled
    without them (a plan compiled with them says so itself: BreakpointPlan.sampled)."""
    if not plan.sampling_chosen:
        plan = choose_sampled(plan, abi, sampled_registers, soft=sampled_soft)
    watching = sampled_soft and watches_data(plan)
    r = plan.recipe
    out = [f"recipe {r.name} (version {r.version}, sha256 {r.sha256[:16]}...)"]
    if r.description:
        out.append(f"  {r.description.strip().splitlines()[0]}")
    t = plan.target
    out.append("")
    out.append("target:")
    if t.attach is not None:
        out.append(f"  attach pid {t.attach}")
    elif t.argv:
        out.append("  run " + " ".join(t.argv))
    else:
        out.append("  (none: give a command after `--` or --pid)")
    out.append(f"  timeout {t.timeout}s" if t.timeout else "  no timeout")
    out.append(f"  follow forks: {'yes' if t.follow_forks else 'no'}")
    if plan.params:
        out.append("params:")
        out += [f"  {k} = {v!r}" for k, v in plan.params.items()]

    out.append("")
    out.append("handler table (dispatch order: exception code, then event code, then catch-all):")
    table = plan.table
    if not (table.by_exception or table.by_event or table.catch_all or getattr(table, "by_signal", None)
            or getattr(table, "syscalls", None)):
        out.append("  (empty)")
    for code, handler in sorted(table.by_exception.items()):
        out.append(f"  exception {exception_name(code)} (0x{code:08x}):")
        out += _actions(handler.actions, "    ")
    for code, handler in sorted(table.by_event.items()):
        out.append(f"  event {int(code)} {EventCode(code).name} ({handler.key}):")
        out += _actions(handler.actions, "    ")
    if table.catch_all is not None:
        out.append("  any event:")
        out += _actions(table.catch_all.actions, "    ")
    if plan.crash is not None:
        out.append("  crash (last-chance exception):")
        out += _actions(plan.crash.actions, "    ")
    for signo, sig in sorted(getattr(table, "by_signal", {}).items()):
        out.append(f"  signal {signo} {sig.key}: {sig.disposition}"
                   + (f", when {sig.when.text}" if sig.when is not None else "")
                   + (f", limit {sig.limit}" if sig.limit is not None else ""))
        out += _actions(sig.actions, "    ")
    syscalls = getattr(table, "syscalls", {})
    if syscalls:
        out.append(f"  event {int(EventCode.SYSCALL_EVENT)} SYSCALL_EVENT (syscalls:), by system call number:")
        for number, handlers in sorted(syscalls.items()):
            for h in handlers:
                key = "" if h.key == h.name else f" (from '{h.key}')"
                out.append(f"    {number} {h.name}{key}, on {h.on}:")
                if h.when is not None:
                    out.append(f"      when {h.when.text}")
                if h.limit is not None:
                    out.append(f"      limit {h.limit}")
                out += _actions(h.actions, "      ")

    out.append("")
    out.append(f"breakpoints ({len(plan.breakpoints)}):")
    for bp in plan.breakpoints:
        kind = bp.type + (f" {bp.access} size {bp.size}" if bp.type != "soft" else "")
        if bp.module == ANY_LIBRARY:
            where = "deferred until a library defining it loads"
        elif bp.module is not None:
            where = f"deferred until {bp.module} loads"
        elif bp.static_address is not None and bp.at.is_constant():
            where = f"absolute address 0x{bp.static_address:x}"
        elif bp.static_address is not None:
            where = f"link-time address 0x{bp.static_address:x}"
        else:
            where = "resolved when the process starts"
        out.append(f"  {bp.id}: {kind} at {bp.at.text} -> {where}" + ("" if bp.enabled else " [disabled]"))
        if bp.note:
            out.append(f"    note: {bp.note}")
        if bp.when is not None:
            out.append(f"    when {bp.when.text}")
        if bp.limit is not None:
            out.append(f"    limit {bp.limit}")
        if bp.sampled:
            out.append("    sampled: its hits only read registers, so the target runs on "
                       "(--no-sampling: stop at each)")
            out.append("      " + _SAMPLED_HOW.get(bp.type, "by a perf event"))
        elif watching and bp.type == "soft" and can_sample(bp, abi, sampled_registers, soft=True):
            out.append("    stops at each hit: the recipe watches data, which an instruction the kernel "
                       "runs out of line for a uprobe would escape")
        out += _actions(bp.actions, "    ")
        if bp.on_return is not None:
            out.append("    on return:")
            out += _actions(bp.on_return, "      ")
    out += explain_patterns(plan, _actions)
    return "\n".join(out) + "\n"
