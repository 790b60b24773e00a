"""Triage of core files: the same session and crash handling as a live run, over the read-only core backend."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..backend.core import CORE_CAPABILITIES, open_core
from ..backend.core.elfcore import open_core_file
from ..errors import UsageError

Emit = Callable[[dict[str, Any]], None]


def collect_cores(given: tuple[str, ...], collect_folder: Callable[[str], list[str]]) -> list[str]:
    """Every core file `given` names: files as they are, folders by their files (recursively);
    sorted and without duplicates, so shards of the same list are the same everywhere."""
    found: set[str] = set()
    for path in given:
        if os.path.isdir(path):
            found.update(collect_folder(path))
        elif os.path.exists(path):
            found.add(path)
        else:
            raise UsageError(f"--core {path}: no such file or folder")
    return sorted(found)


def check_cores(paths: list[str]) -> None:
    """Parse every core's headers and notes now, before any work: a file that is not a
    readable core ends the run with one line naming it (TargetError, exit 3)."""
    for path in paths:
        open_core_file(path).close()


def compile_core_plan(recipe: Any, overrides: dict[str, str], timeout: float | None) -> Any:
    """The recipe compiled against the core backend's capabilities (read-only: a recipe
    with breakpoints or `set`/`write`/`return` is refused here, with each one's line).
    The pid is a stand-in: each core's own is put in before its session."""
    from ..compiler.plan import compile_plan

    return compile_plan(recipe, overrides=overrides, pid=0, timeout=timeout,
                        capabilities=CORE_CAPABILITIES, need_target=True)


def run_core(plan: Any, path: str, exe: str | None, emit: Emit, out_dir: str) -> tuple[dict[str, Any], list[str]]:
    """One engine session over the core at `path`; records go to `emit`. Returns the
    summary and what the backend warned about (files missing or of another build)."""
    import dataclasses

    from ..engine.session import run as run_session

    backend = open_core(path, exe)
    target = dataclasses.replace(plan.target, attach=backend.pid, argv=(backend.program,), env=None,
                                 stdin=None, follow_forks=False)
    # Classified once, by the caller (runner._outcome), as a live crash is.
    result = run_session(dataclasses.replace(plan, target=target), emit=emit, backend=backend, out_dir=out_dir,
                         classify_crashes=False)
    return result.summary, list(backend.warnings)


def core_target(path: str, exe: str | None) -> tuple[str, str | None]:
    """(program path, build id from the core's own bytes) of the core at `path`."""
    backend = open_core(path, exe)
    try:
        return backend.program, backend.build_id
    finally:
        backend.close()
