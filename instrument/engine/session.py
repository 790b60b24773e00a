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

from .. import __version__, interrupts
from ..backend.base import Backend, SpawnOptions
from ..errors import EXIT_CRASH, EXIT_OK, DebuggerError
from ..interrupts import Interrupted
from .loop import Session


@dataclass(frozen=True)
class SessionResult:
    exit_status: int
    summary: dict[str, Any]


def run(plan: Any, *, emit: Callable[[dict[str, Any]], None], backend: Backend | None = None,
        all_events: bool = False, out_dir: str | Path = ".", pin_cpu: bool = True,
        sample_hits: bool = True, module_map_factory: Callable[[], Any] | None = None) -> SessionResult:
    """Run `plan`, sending every record to `emit`; return the exit status and the summary.

    `sample_hits`: hardware breakpoints that only log registers may report their hits
    without stopping the target (engine/sampling.py); False stops it at every hit.
    `module_map_factory` replaces the ELF module map (tests, backends without ELF files)."""
    if backend is None:
        from ..backend import get_backend
        backend = get_backend()
    session = Session(plan, backend, emit, all_events=all_events, out_dir=out_dir,
                      module_map_factory=module_map_factory, sample_hits=sample_hits)
    target = plan.target
    interrupted: Interrupted | None = None
    with interrupts.deferred():
        try:
            if target.attach is not None:
                session.attached = True
                session.main_pid = backend.attach(target.attach)
            else:
                session.main_pid = backend.spawn(SpawnOptions(
                    argv=tuple(target.argv), env=target.env, cwd=target.cwd, stdin_path=target.stdin,
                    follow_forks=target.follow_forks, pin_cpu=pin_cpu and not session.runs_on_at_hits))
            session.run_loop(target.timeout)
        except Interrupted as e:
            interrupted = e
            session.ended_how = "interrupted"
        finally:
            # A second Ctrl-C must not stop us halfway through putting the target back.
            with interrupts.ignored():
                _clean_up(session, backend)
    if session.crashed and session.ended_how == "exited":
        session.ended_how = "crashed"
    summary = _summary(session, plan)
    emit(summary)
    status = EXIT_CRASH if session.crashed else EXIT_OK
    if interrupted is not None and not session.crashed and not session.attached:
        status = 128 + interrupted.signum     # the shell's convention for "killed by a signal"
    return SessionResult(status, summary)


def _clean_up(session: Session, backend: Backend) -> None:
    """Detach (restoring everything we patched) or kill every process still traced."""
    keep_running = session.attached or session.end_request == "detach"
    if session.end_request == "kill":
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
                for state in session.breakpoints.values():
                    session.disarm(process, state)
                for address in list(process.sites):
                    site = process.sites.pop(address)
                    site.remove(process.raw_write)
                backend.detach(pid)
                if session.ended_how == "exited":
                    session.ended_how = "detached"
            else:
                backend.kill(pid)
                if session.ended_how in ("exited", "stopped"):
                    session.ended_how = "killed"
        except DebuggerError:
            pass   # already gone
        process.alive = False
    session.processes.clear()
    backend.close()
    for message in backend.sampling_problems():
        session.errors.append(message)
    if problem is not None:
        raise problem


def _summary(session: Session, plan: Any) -> dict[str, Any]:
    recipe = plan.recipe
    for message in session.patterns.final_warnings() if session.patterns is not None else ():
        session.errors.append(message)      # a pattern that armed nothing (its module never loaded)
    rec = session.record("summary", None, session.main_pid or 0, 0)
    rec.update({
        "ended": session.ended_how,
        "exit_code": session.exit_code,
        "signal": session.exit_signal,
        "crashed": session.crashed,
        "breakpoints": {bp_id: session.breakpoints[bp_id].hits for bp_id in session.order},
        "recipe": {"name": recipe.name, "sha256": recipe.sha256},
        "tool": {"name": "instrument", "version": __version__},
        "target": _target_info(plan),
    })
    never = [bp_id for bp_id in session.order
             if not session.breakpoints[bp_id].ever_armed and session.breakpoints[bp_id].plan.enabled]
    if never:
        rec["not_armed"] = never      # e.g. its module never loaded, or its address was refused
    if session.errors:
        rec["errors"] = list(session.errors)
    return rec


def _target_info(plan: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if plan.target.argv:
        info["path"] = plan.target.argv[0]
        try:
            from ..symbols.modules import open_module_image
            info["build_id"] = open_module_image(plan.target.argv[0]).build_id
        except Exception:  # noqa: BLE001 - provenance is best effort; never fail the run for it
            info["build_id"] = None
    if plan.target.attach is not None:
        info["pid"] = plan.target.attach
    return info
