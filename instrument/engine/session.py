"""Run a compiled Plan against a real target: start or attach, loop, and always clean up.

Cleanup is the contract of HOUSE.md rule 5: whatever ends the session
(the target's exit, an action, --timeout, SIGINT, SIGTERM, an error inside
instrument), an attached target is left exactly as it was — every int3 byte,
debug register and page protection restored — and keeps running; a target
we spawned is killed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import interrupts
from ..backend.base import Backend, SpawnOptions
from ..compiler.model import Plan
from ..compiler.sampling import choose_sampled
from ..errors import EXIT_CRASH, EXIT_OK, DebuggerError, UsageError
from ..interrupts import Interrupted
from ..version import __version__
from ..symbols.modules import open_module_image
from .loop import Ending, Session
from .process import Modules
from .records import Emit


@dataclass(frozen=True)
class SessionResult:
    exit_status: int
    summary: dict[str, Any]


def run(plan: Plan, *, emit: Emit, backend: Backend | None = None,
        all_events: bool = False, out_dir: str | Path = ".", pin_cpu: bool = True,
        module_map_factory: Callable[[], Modules] | None = None,
        classify_crashes: bool = True, syscall_filter: bool = True) -> SessionResult:
    """Run `plan`, sending every record to `emit`; return the exit status and the summary.

    Hardware breakpoints run sampled or stopped as the plan says (compile_plan with the
    backend's capabilities; a plan compiled without has them chosen here, by the
    compiler's rule, for `backend`). `module_map_factory` replaces the ELF module map
    (tests, backends without ELF files). `classify_crashes` False: crash records come
    without `classification` and `hash`, for a caller that classifies them itself
    (triage, which first adds what a sanitizer reported). `syscall_filter` False: the
    recipe's system calls stop the target by PTRACE_SYSCALL even where a seccomp filter
    could do (bench/syscalls.py compares the two)."""
    if backend is None:
        from ..backend import get_backend      # lazy: it picks this OS's backend module
        backend = get_backend()
    if not plan.sampling_chosen:
        caps = backend.capabilities
        plan = choose_sampled(plan, caps.abi, caps.sampled_registers, soft=caps.sampled_soft)
    target = plan.target
    session = Session(plan, backend, emit, all_events=all_events, out_dir=out_dir,
                      module_map_factory=module_map_factory, attached=target.attach is not None,
                      classify_crashes=classify_crashes)
    # Tracer and target on one CPU make a stop ~5x cheaper here (HOUSE rule 12). It
    # changes nothing a single thread can notice; the backend lets the target go at its
    # second thread, whose scheduling one CPU would change. The summary says whether the
    # run was pinned throughout. An attached target keeps its own affinity; a run with
    # no stops needs no pin.
    pinned = pin_cpu and target.attach is None and not session.runs_on_at_hits
    numbers, exits = plan.table.syscall_numbers, plan.table.syscall_exits
    filtered, why = syscall_mode(plan, backend, syscall_filter)
    if numbers:
        session.syscall_stops = {"stops": "seccomp-bpf" if filtered else "PTRACE_SYSCALL",
                                 **({"why": why} if why else {})}
    interrupted: Interrupted | None = None
    with interrupts.deferred():
        try:
            if target.attach is not None:
                session.main_pid = backend.attach(target.attach)
                if numbers:
                    backend.trace_syscalls(session.main_pid, numbers, exits)
            elif target.argv is None:
                raise UsageError("no target: the plan has neither a command to run nor a pid to attach to")
            else:
                session.main_pid = backend.spawn(SpawnOptions(
                    argv=target.argv, env=target.env, cwd=target.cwd, stdin_path=target.stdin,
                    follow_forks=target.follow_forks, pin_cpu=pinned,
                    syscalls=numbers or None, syscall_exits=exits, syscall_filter=filtered,
                    guard_filter=guard_filter(plan, backend, syscall_filter)))
            session.run_loop(target.timeout)
        except Interrupted as e:
            interrupted = e
            session.ended_how = Ending.INTERRUPTED
        finally:
            # A second Ctrl-C must not stop us halfway through putting the target back.
            with interrupts.ignored():
                _clean_up(session, backend)
    if session.crashed and session.ended_how is Ending.EXITED:
        session.ended_how = Ending.CRASHED
    summary = _summary(session, plan)
    summary["pinned"] = pinned and not session.threads_started
    emit(summary)
    status = EXIT_CRASH if session.crashed else EXIT_OK
    if interrupted is not None and not session.crashed and not session.attached:
        status = 128 + interrupted.signum     # the shell's convention for "killed by a signal"
    return SessionResult(status, summary)


def syscall_mode(plan: Plan, backend: Backend, allowed: bool = True) -> tuple[bool, str | None]:
    """Whether the plan's system calls stop a started target through a seccomp filter, and
    if not, why not (the summary says). A filter stays with the process and its children
    for good, and a call it traps with nobody tracing fails with ENOSYS: so no filter
    where a process it covers could be let go (a fork child not followed, a `detach`)."""
    if not plan.table.syscalls:
        return False, None
    return _filter_refused(plan, backend, allowed)


def guard_filter(plan: Plan, backend: Backend, allowed: bool = True) -> bool:
    """Whether a started target with memory breakpoints gets a seccomp filter that stops
    only its system calls with pointers (a call on a guarded page must have it opened);
    else every call stops while a page is guarded. Where syscall_mode allows a filter."""
    if not any(bp.type == "memory" for bp in plan.breakpoints):
        return False
    return _filter_refused(plan, backend, allowed)[0]


def _filter_refused(plan: Plan, backend: Backend, allowed: bool) -> tuple[bool, str | None]:
    if plan.target.attach is not None:
        return False, "an attached process cannot be given a seccomp filter: every system call stops it"
    if not backend.capabilities.syscall_filter:
        return False, "this backend has no system call filter: every system call stops the target"
    if not allowed:
        return False, "the filter was turned off: every system call stops the target"
    if not plan.target.follow_forks:
        return False, ("follow_forks is off: a fork child let go with the filter would have its named "
                       "calls fail, so every system call stops the target (set target.follow_forks)")
    if any(a.kind == "detach" for a in _all_actions(plan)):
        return False, ("a `detach` action: a process let go with the filter would have its named calls "
                       "fail, so every system call stops the target")
    return True, None


def _all_actions(plan: Plan) -> list[Any]:
    table = plan.table
    found: list[Any] = []
    for bp in plan.breakpoints:
        found += [*bp.actions, *(bp.on_return or ())]
    for handler in [*table.by_exception.values(), *table.by_event.values(), table.catch_all, table.crash]:
        if handler is not None:
            found += handler.actions
    for handlers in table.syscalls.values():
        for h in handlers:
            found += h.actions
    return found


def _clean_up(session: Session, backend: Backend) -> None:
    """Detach (restoring everything we patched) or kill every process still traced."""
    keep_running = session.attached or session.end_request is Ending.DETACHED
    if session.end_request is Ending.KILLED:
        keep_running = False
    problem: BaseException | None = None
    try:
        session.report_sampled_hits()
    except DebuggerError:
        pass       # a process that went meanwhile: its hits were reported with its exit
    except BaseException as e:     # noqa: BLE001 - the target is put back first (a closed pipe)
        problem = e
    for pid, process in list(session.processes.items()):
        try:
            if keep_running:
                session.breakpoints.disarm_all(process)
                for address in list(process.sites):
                    site = process.sites.pop(address)
                    site.remove(process.raw_write)
                backend.detach(pid)
                if session.ended_how is Ending.EXITED:
                    session.ended_how = Ending.DETACHED
            else:
                backend.kill(pid)
                if session.ended_how in (Ending.EXITED, Ending.STOPPED):
                    session.ended_how = Ending.KILLED
        except DebuggerError:
            pass   # already gone
        process.alive = False
    session.processes.clear()
    backend.close()
    for message in backend.sampling_problems():
        session.errors.append(message)
    session.errors.extend(session.exceptions.late_hits())
    if problem is not None:
        raise problem


def _summary(session: Session, plan: Plan) -> dict[str, Any]:
    recipe = plan.recipe
    for message in session.breakpoints.final_warnings():
        session.errors.append(message)      # a pattern that armed nothing (its module never loaded)
    rec = session.recorder.record("summary", None, session.main_pid or 0, 0)
    rec.update({
        "ended": session.ended_how.value,
        "exit_code": session.exit_code,
        "signal": session.exit_signal,
        "crashed": session.crashed,
        "breakpoints": {bp.id: bp.hits for bp in session.breakpoints},
        "recipe": {"name": recipe.name, "sha256": recipe.sha256},
        "tool": {"name": "instrument", "version": __version__},
        "target": _target_info(plan),
    })
    if session.exceptions.signals.counts:
        rec["signals"] = dict(session.exceptions.signals.counts)    # deliveries handled, per `signals:` entry
    if session.syscall_stops is not None:
        counts: dict[str, int] = {}
        for handlers in plan.table.syscalls.values():
            for h in handlers:
                counts.setdefault(h.key, 0)
                counts[h.key] = max(counts[h.key], session.syscalls.counts.get(h.index, 0))
        rec["syscalls"] = {**session.syscall_stops, "calls": counts}
    never = [bp.id for bp in session.breakpoints if not bp.ever_armed and bp.plan.enabled]
    if never:
        rec["not_armed"] = never      # e.g. its module never loaded, or its address was refused
    if session.errors:
        rec["errors"] = list(session.errors)
    return rec


def _target_info(plan: Plan) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if plan.target.argv:
        info["path"] = plan.target.argv[0]
        try:
            info["build_id"] = open_module_image(plan.target.argv[0]).build_id
        except Exception:  # noqa: BLE001 - provenance is best effort; never fail the run for it
            info["build_id"] = None
    if plan.target.attach is not None:
        info["pid"] = plan.target.attach
    return info
