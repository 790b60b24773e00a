"""Recipe model -> Plan: the resolved target, the debug-event handler table, the breakpoints."""

from __future__ import annotations

import dataclasses

import os
import shutil
import struct
from typing import TYPE_CHECKING, Any, Sequence

from ..actions import CompileContext
from ..arch.x86_64 import MASK64, watch_aligned
from ..backend.base import Capabilities
from ..errors import EvaluationError, Location, RecipeError, RecipeErrors, TargetError, UsageError
from ..expr import Expr
from ..recipe.checks import apply_params, substitute
from ..recipe.model import Breakpoint, Recipe
from .model import BreakpointPlan, Plan, TargetPlan
from .resolve import StaticSymbols
from .sampling import SAMPLE_AFTER, choose_sampled
from .sections import compile_sections
from .table import compile_actions
from ..recipe.globs import is_pattern
from .patterns import pattern_expr, split_patterns
from .line_plans import split_lines, static_line_note

if TYPE_CHECKING:
    from ..analysis.classify import Rule

__all__ = ["BreakpointPlan", "Plan", "TargetPlan", "compile_plan"]


def compile_plan(recipe: Recipe, *, overrides: dict[str, str] | None = None,
                 command: Sequence[str] | None = None, pid: int | None = None,
                 timeout: float | None = None, capabilities: Capabilities | None = None,
                 need_target: bool = False, sample_hits: bool = True,
                 sample_after: int | None = None) -> Plan:
    """Compile a loaded recipe. `command`/`pid`/`timeout` are the CLI's overrides.

    With the backend's `capabilities`, the recipe is checked against them and the
    hardware breakpoints whose hits can be sampled are chosen (compiler/sampling.py;
    `sample_hits` False: none, every hit stops the target; `sample_after`: the stops
    before a sampled soft breakpoint becomes a uprobe, SAMPLE_AFTER when None); without, the plan is
    backend-neutral and the engine chooses its sampled breakpoints by the same rule.

    Raises RecipeErrors with every error found, each with its file:line:col."""
    params = apply_params(recipe, overrides or {}, require_all=need_target)
    errors: list[RecipeError] = []
    target = _target_plan(recipe, params, command, pid, timeout, errors)
    if need_target and target.argv is None and target.attach is None:
        raise UsageError("no target: give the recipe a `target: run:` or `attach:`, "
                         "or a command after `--`, or --pid")
    symbols = StaticSymbols.for_program(target.argv[0] if target.argv else None, target.cwd)
    ctx = CompileContext(recipe, params, frozenset(b.id for b in recipe.breakpoints), symbols)
    breakpoints = []
    # validate/explain run without --set for required params: a breakpoint whose
    # address is such a param can only be checked once it is given.
    unset = frozenset(p.name for p in recipe.params if p.required and p.name not in (overrides or {}))
    for bp in recipe.breakpoints:
        try:
            breakpoints.append(_compile_breakpoint(bp, ctx, symbols, unset))
        except RecipeError as e:
            errors.append(e)
        except RecipeErrors as e:
            errors.extend(e.errors)
    breakpoints, lines = split_lines(recipe, breakpoints, symbols)          # compiler/line_plans.py
    plain, patterns = split_patterns(recipe, breakpoints, symbols, errors, lines)   # compiler/patterns.py
    table = compile_sections(recipe, ctx, errors)
    rules = _compile_rules(recipe, errors)
    if capabilities is not None:
        _check_capabilities(recipe, capabilities, errors)
        if target.argv and need_target:
            _check_program_arch(target.argv[0], target.cwd, capabilities)
    if errors:
        errors.sort(key=lambda e: (e.location.line if e.location else 0, e.location.col if e.location else 0))
        raise RecipeErrors(errors)
    plan = Plan(recipe, params, target, tuple(plain), table, rules, patterns=patterns,
                variables=bool(ctx.dwarf_uses))
    if capabilities is not None:
        plan = choose_sampled(plan, capabilities.abi, capabilities.sampled_registers, enabled=sample_hits,
                              soft=capabilities.sampled_soft,
                              after=SAMPLE_AFTER if sample_after is None else sample_after)
    return plan


def _compile_breakpoint(bp: Breakpoint, ctx: CompileContext, symbols: StaticSymbols,
                        unset: frozenset[str] = frozenset()) -> BreakpointPlan:
    at_path = tuple(bp.path) + ("at",)
    at_text = bp.at
    if isinstance(at_text, str) and any("{" + name + "}" in at_text for name in unset):
        at = Expr(at_text, frozenset(), lambda env: 0, False)   # placeholder: never armed
        return _breakpoint_plan(bp, ctx, at, None, None)
    if isinstance(at_text, str) and "{" in at_text:
        # `at: "{function}"`: a param names the place (a symbol, an address); the
        # result is still parsed by the expression language, never evaluated as code.
        try:
            at_text = substitute(at_text, ctx.params)
        except RecipeError as e:
            raise RecipeError(e.message, ctx.where(at_path)) from None
    if is_pattern(at_text):     # one breakpoint per function it matches: compiler/patterns.py
        return _breakpoint_plan(bp, ctx, pattern_expr(str(at_text).strip()), None, None)
    try:
        at = ctx.expr(at_text, at_path, check_names=False)   # classify() names what is missing
        if at.is_constant():
            _check_constant_address(at, ctx.where(at_path))
        module, static_address = symbols.classify(at, ctx.params, ctx.where(at_path), text=str(at_text))
    except RecipeError as e:
        # Still check the condition and actions: every error of the file in one pass.
        try:
            _breakpoint_plan(bp, ctx, pattern_expr(str(at_text)), None, None)
        except RecipeErrors as more:
            raise RecipeErrors([e, *more.errors]) from None
        except RecipeError as more:
            raise RecipeErrors([e, more]) from None
        raise
    plan = _breakpoint_plan(bp, ctx, at, module, static_address)
    note = static_line_note(str(at_text), symbols)
    return dataclasses.replace(plan, note=note) if note else plan


def _check_constant_address(at: Expr, location: Location) -> None:
    """An `at:` that reads nothing is known now: one that cannot be an address
    (`1/0`, a string) is a recipe error, not a breakpoint that never arms."""
    try:
        value = at.constant_value()
    except EvaluationError as e:
        raise RecipeError(f"breakpoint address '{at.text}': {e}", location) from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MASK64:
        raise RecipeError(f"breakpoint address '{at.text}' is {value!r}, not an address", location)


def _breakpoint_plan(bp: Breakpoint, ctx: CompileContext, at: Expr, module: str | None,
                     static_address: int | None) -> BreakpointPlan:
    errors: list[RecipeError] = []
    size = bp.effective_size
    if bp.type == "hardware" and bp.effective_access != "execute" and static_address is not None \
            and not watch_aligned(static_address, size):
        # Known from the program's symbols (a load base is page-aligned, so PIE keeps it).
        errors.append(RecipeError(
            f"hardware watch of {size} bytes at {bp.at} ({static_address:#x}) is not aligned: the address "
            f"must be a multiple of {size}", ctx.where(tuple(bp.path) + ("at",))))
    when = None
    if bp.when is not None:
        try:
            when = ctx.expr(bp.when, tuple(bp.path) + ("when",))
        except RecipeError as e:
            errors.append(e)
    actions = compile_actions(bp.actions, ctx, errors)
    on_return = compile_actions(bp.on_return, ctx, errors) if bp.on_return is not None else None
    if errors:
        raise RecipeErrors(errors) if len(errors) > 1 else errors[0]
    return BreakpointPlan(
        id=bp.id, type=bp.type, at=at, module=module, static_address=static_address,
        access=bp.effective_access, size=bp.effective_size, when=when, limit=bp.limit,
        enabled=bp.enabled, actions=actions, on_return=on_return, line=ctx.where(tuple(bp.path)).line,
    )


def _compile_rules(recipe: Recipe, errors: list[RecipeError]) -> tuple[Rule, ...]:
    if not recipe.rules:
        return ()
    from ..analysis.classify import parse_rules     # only for a recipe with rules: start-up speed
    try:
        return tuple(parse_rules({"version": 1, "rules": list(recipe.rules)}, "rules"))
    except UsageError as e:
        errors.append(RecipeError(str(e), recipe.where(("rules",))))
        return ()


def _target_plan(recipe: Recipe, params: dict[str, Any], command: Sequence[str] | None,
                 pid: int | None, timeout: float | None, errors: list[RecipeError]) -> TargetPlan:
    t = recipe.target

    def sub(text: object) -> str:
        return substitute(str(text), params)

    argv: tuple[str, ...] | None = None
    attach: int | None = pid
    if command:
        argv = tuple(command)
    elif pid is None and t is not None and t.run:
        argv = tuple(sub(a) for a in t.run)
    if attach is None and not command and t is not None and t.attach is not None:
        raw = sub(t.attach) if isinstance(t.attach, str) else t.attach
        try:
            attach = int(raw)
        except ValueError:
            errors.append(RecipeError(f"attach: '{raw}' is not a pid", recipe.where(("target", "attach"))))
    env = None
    if t is not None and t.env:
        env = dict(os.environ)
        env.update({k: sub(v) for k, v in t.env.items()})
    if argv:
        resolved = _which(argv[0], t.cwd if t else None)
        argv = (resolved,) + argv[1:] if resolved else argv
    return TargetPlan(
        argv=argv, attach=attach, env=env,
        cwd=sub(t.cwd) if t is not None and t.cwd else None,
        stdin=sub(t.stdin) if t is not None and t.stdin else None,
        timeout=timeout if timeout is not None else (t.timeout if t is not None else None),
        follow_forks=bool(t.follow_forks) if t is not None else False,
    )


def _which(program: str, cwd: str | None) -> str | None:
    """argv[0] as exec would find it: a path as given, else a PATH search."""
    if "/" in program:
        return program
    return shutil.which(program)


_ELF_MACHINES = {3: "x86", 62: "x86_64", 40: "arm", 183: "aarch64"}


def _check_program_arch(program: str, cwd: str | None, caps: Capabilities) -> None:
    """Refuse an ELF built for another architecture before starting it (a 32-bit
    program would run, but every register and address we report would be wrong)."""
    path = program if os.path.isabs(program) or not cwd else os.path.join(cwd, program)
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return                              # the backend reports what cannot be started
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return
    machine = struct.unpack_from("<H", head, 18)[0]
    arch = "x86" if head[4] == 1 and machine == 3 else _ELF_MACHINES.get(machine, f"machine {machine}")
    if arch != caps.arch:
        raise TargetError(f"{program} is built for {arch}; this backend debugs {caps.arch} programs only")


def _check_capabilities(recipe: Recipe, caps: Capabilities, errors: list[RecipeError]) -> None:
    hardware = [b for b in recipe.breakpoints if b.type == "hardware"]
    if len(hardware) > caps.hardware_breakpoints:
        bp = hardware[caps.hardware_breakpoints]
        errors.append(RecipeError(f"too many hardware breakpoints: this backend has {caps.hardware_breakpoints} debug registers",
                                  recipe.where(tuple(bp.path))))
    if not caps.memory_breakpoints:
        for bp in recipe.breakpoints:
            if bp.type == "memory":
                errors.append(RecipeError("memory breakpoints are not supported by this backend yet",
                                          recipe.where(tuple(bp.path) + ("type",))))
    if recipe.syscalls and not caps.syscalls:
        errors.append(RecipeError(f"system call stops are not supported by this backend ({caps.os})",
                                  recipe.where(("syscalls",), key=True)))
    if getattr(caps, "read_only", False):
        _check_read_only(recipe, errors)
    if recipe.signals and not getattr(caps, "signals", False):
        errors.append(RecipeError(f"`signals:` is not supported by this backend: {_no_signals(caps)}",
                                  recipe.where(("signals",), key=True)))
    req = recipe.requires
    if req.get("os") and req["os"] != caps.os:
        errors.append(RecipeError(f"this recipe requires os {req['os']}; this is {caps.os}", recipe.where(("requires", "os"))))
    if req.get("arch") and req["arch"] != caps.arch:
        errors.append(RecipeError(f"this recipe requires arch {req['arch']}; this is {caps.arch}", recipe.where(("requires", "arch"))))


def _no_signals(caps: Capabilities) -> str:
    """Why a backend has no `signals:`, for the error that refuses the section."""
    if getattr(caps, "read_only", False):
        return "a core file is read-only: nothing runs, so no signal is delivered"
    if caps.os == "windows":
        return ("Windows has no POSIX signals (its exceptions and Ctrl-C events are under `events:`, "
                "e.g. `control_c_exit`)")
    return "it does not report signal deliveries"


# Actions that change the target: a read-only backend (a core file) cannot run them.
_CHANGING_ACTIONS = frozenset({"set", "write", "return"})


def _check_read_only(recipe: Recipe, errors: list[RecipeError]) -> None:
    """Breakpoints and actions that change the target need a running process."""
    for bp in recipe.breakpoints:
        errors.append(RecipeError(f"breakpoint {bp.id}: this backend is read-only (a core file): "
                                  "nothing runs, so no breakpoint can be hit", recipe.where(tuple(bp.path))))
    for actions in (recipe.crash, *recipe.events.values()):
        for action in actions:
            if action.kind in _CHANGING_ACTIONS:
                errors.append(RecipeError(f"`{action.kind}` changes the target; this backend is read-only "
                                          "(a core file)", recipe.where(tuple(action.path))))
