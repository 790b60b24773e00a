"""Which breakpoints are sampled: reported without stopping the thread.

A backend that can (Capabilities.sampled_registers; Linux through perf
events: hardware breakpoints in backend/linux/perfbp.py and, where
Capabilities.sampled_soft, soft ones as uprobes in backend/linux/uprobes.py)
reports such a hit with the registers it had and lets the thread run on. That is only right when nothing the hit does
needs the thread where it was: every action a `log` of registers and
expressions over them (no memory, no change to the target, no return to
catch), and the condition likewise. Everything else stops the thread.

Soft breakpoints are not sampled in a recipe that also watches data (a memory
breakpoint, or a hardware one on reads or writes): the kernel runs a uprobe's
instruction out of line, single-stepped, and an access it makes there escapes
both watches. A debug-register watch it triggers is consumed with the kernel's
own single-step trap and never reported (arch/x86/kernel/traps.c,
exc_debug_user: the uprobe's notifier takes the #DB); a guard-page fault makes
the kernel run the probe again when the instruction restarts (a second hit),
and our step past the guarded access, begun on the uprobe's int3, ends with a
SIGTRAP the kernel sends the program for the single-step it saw (uprobes'
arch_uprobe_post_xol). Those soft breakpoints stop the thread, as with
`--no-sampling`.

The choice is the compiler's and is recorded in the Plan
(BreakpointPlan.sampled); the engine arms each breakpoint the way the plan says.
"""

from __future__ import annotations

import dataclasses

from ..arch import x86_64 as regdefs
from ..arch.x86_64 import Abi
from .model import BreakpointPlan, Plan


def sampled_registers(plan: BreakpointPlan, abi: Abi, *, soft: bool = False) -> frozenset[str] | None:
    """The full registers the hits of breakpoint `plan` read, when they read nothing
    else and change nothing; None when its hits need the thread stopped. `soft`: soft
    breakpoints can be sampled too (Capabilities.sampled_soft)."""
    if plan.on_return is not None:
        return None
    if not (plan.type == "hardware" and plan.access == "execute") and not (soft and plan.type == "soft"):
        return None
    reads: set[str] = set()
    for action in plan.actions:
        if action.reads is None:
            return None
        reads |= action.reads
    if plan.when is not None:
        if plan.when.reads is None:
            return None
        reads |= plan.when.reads
    full = {"rip"}
    for name in reads:
        if name == "retval":
            full.add(regdefs.RETURN_REGISTER)
        elif name.startswith("arg"):
            slots = regdefs.ARG_REGISTERS[abi]
            index = int(name[3:])
            if index >= len(slots):
                return None            # on the stack: memory
            full.add(slots[index])
        else:
            full.add(regdefs.full_register(name))
    return frozenset(full)


def can_sample(plan: BreakpointPlan, abi: Abi, available: frozenset[str], *, soft: bool = False) -> bool:
    needed = sampled_registers(plan, abi, soft=soft)
    return needed is not None and needed <= available


def watches_data(plan: Plan) -> bool:
    """Whether the plan has a breakpoint on data accesses (memory, or hardware on reads
    or writes): then no soft breakpoint is sampled (see the module docstring)."""
    return any(bp.type == "memory" or (bp.type == "hardware" and bp.access != "execute")
               for bp in plan.breakpoints)


def choose_sampled(plan: Plan, abi: Abi, available: frozenset[str], *, enabled: bool = True,
                   soft: bool = False) -> Plan:
    """`plan` with its sampled breakpoints chosen for a backend of this `abi` that can
    sample `available` registers (Capabilities.abi, .sampled_registers), soft ones too
    where `soft` (.sampled_soft) and the plan watches no data; `enabled` False: none is
    sampled (`--no-sampling`), every hit stops the target."""
    soft = soft and not watches_data(plan)

    def chosen(bp: BreakpointPlan) -> BreakpointPlan:
        return dataclasses.replace(bp, sampled=enabled and can_sample(bp, abi, available, soft=soft))

    breakpoints = tuple(chosen(bp) for bp in plan.breakpoints)
    # A pattern's functions are breakpoints made from its template as modules load.
    patterns = dataclasses.replace(plan.patterns, patterns=tuple(
        dataclasses.replace(p, template=chosen(p.template)) for p in plan.patterns.patterns))
    return dataclasses.replace(plan, breakpoints=breakpoints, patterns=patterns, sampling_chosen=True)
