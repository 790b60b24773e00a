"""Triage runs: the command once per input (files, @@ or stdin), or one core file each, in parallel workers, into one report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import UsageError
from ..events import EventCode, ExceptionCode
from ..analysis.classify import annotate, load_rules
from .report_model import build_report, normalize_crash
from ..analysis.sanitizer import parse_report, sanitizer_env

PLACEHOLDER = "@@"
DEFAULT_RECIPE = "crash-triage"
# Files fuzzers leave next to their findings that are not inputs.
SKIPPED_NAMES = frozenset({"README.txt", "README", "README.md"})
DEFAULT_TIMEOUT = 10.0
NO_INPUT = "-"       # the input name of a run without --inputs
MAX_STDERR_LINES = 2000
WARM_INPUTS = 8      # at most this many inputs run before parallel workers fork (triage())

Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class TriageConfig:
    """Everything a triage run needs; plain values, so it pickles into worker processes."""

    command: tuple[str, ...]
    recipe: str | None = None             # a recipe file; None: the shipped crash-triage recipe
    inputs: str | None = None             # a folder of inputs; None: run the command once
    jobs: int = 1
    timeout: float | None = None          # None: the recipe's target timeout, else DEFAULT_TIMEOUT
    shard: tuple[int, int] | None = None  # (K, N), 1 <= K <= N
    rules: tuple[str, ...] = ()           # extra --rules files
    pin_cpu: bool = True
    out_dir: str = "instrument-out"
    overrides: dict[str, str] = field(default_factory=dict)
    cores: tuple[str, ...] = ()           # core files, or folders of them: triaged without running anything
    exe: str | None = None                # the program the cores are of, where their path to it is wrong


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` -> (K, N) with 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/", 1))
    except ValueError:
        raise UsageError(f"--shard {text}: expected K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: K must be between 1 and N")
    return k, n


def collect_inputs(folder: str) -> list[str]:
    """Every input file under `folder`, recursively, sorted; dot files, dot folders and
    fuzzers' README.txt skipped (AFL's queue/.state, crashes/README.txt)."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"--inputs {folder}: not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name not in SKIPPED_NAMES:
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def select_shard(inputs: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Shard K of N: every N-th input of the sorted list, starting at the K-th."""
    if shard is None:
        return inputs
    k, n = shard
    return inputs[k - 1::n]


def input_argv(command: tuple[str, ...], path: str | None) -> tuple[tuple[str, ...], str | None]:
    """(argv, stdin path): `@@` replaced by the input's path, else the input goes on stdin."""
    if path is None:
        return command, None
    if any(PLACEHOLDER in arg for arg in command):
        return tuple(arg.replace(PLACEHOLDER, path) for arg in command), None
    return command, path


class Worker:
    """One process's triage state: the compiled plan and rules, built once and reused for
    every input (the ELF symbol and CFI caches live for the whole process too)."""

    def __init__(self, config: TriageConfig, quiet_stderr: bool = True) -> None:
        from ..compiler.plan import compile_plan
        from ..recipe.load import load_recipe

        self.config = config
        self.quiet_stderr = quiet_stderr
        recipe = load_recipe(recipe_path(config.recipe))
        if config.cores:
            from .cores import compile_core_plan
            self.plan = compile_core_plan(recipe, config.overrides, config.timeout)
            self.rules = load_rules(config.rules, first=self.plan.rules)
            return
        plan = compile_plan(recipe, overrides=config.overrides, command=config.command,
                            timeout=config.timeout, need_target=True)
        self.rules = load_rules(config.rules, first=plan.rules)
        # Triage follows the whole process tree (SPEC 6), and needs the target's
        # stderr as records to read sanitizer reports from.
        env = sanitizer_env(plan.target.env if plan.target.env is not None else os.environ)
        timeout = plan.target.timeout if plan.target.timeout is not None else DEFAULT_TIMEOUT
        target = dataclasses.replace(plan.target, follow_forks=True, env=env, timeout=timeout)
        self.plan = dataclasses.replace(plan, target=target, table=_with_debug_strings(plan.table))

    def run(self, path: str | None) -> dict[str, Any]:
        """Run the command on one input: {input, status: crash|timeout|clean, crash}."""
        from ..engine.session import run as run_session

        if self.config.cores:
            return self.run_core(str(path))
        argv, stdin = input_argv(tuple(self.plan.target.argv or ()), path)
        plan = dataclasses.replace(self.plan, target=dataclasses.replace(self.plan.target, argv=argv, stdin=stdin))
        crashes: list[dict[str, Any]] = []
        stderr: list[str] = []

        def emit(rec: dict[str, Any]) -> None:
            if rec.get("event") == "crash":
                crashes.append(rec)
            elif rec.get("event") == "debug_string" and len(stderr) < MAX_STDERR_LINES:
                stderr.append(str(rec.get("text", "")))

        with _target_output_hidden(self.quiet_stderr):
            # Classified once, in _outcome: with the sanitizer's report and every --rules file.
            result = run_session(plan, emit=emit, out_dir=self.config.out_dir, pin_cpu=self.config.pin_cpu,
                                 classify_crashes=False)
        return self._outcome(path, result.summary, crashes, stderr)

    def run_core(self, path: str) -> dict[str, Any]:
        """The crash a core file holds, handled as a live crash is: {input, status, crash}."""
        from .cores import run_core

        crashes: list[dict[str, Any]] = []
        summary, warnings = run_core(self.plan, path, self.config.exe,
                                     lambda rec: crashes.append(rec) if rec.get("event") == "crash" else None,
                                     self.config.out_dir)
        outcome = self._outcome(path, summary, crashes, [])
        if warnings and outcome["crash"] is not None:
            outcome["crash"].setdefault("errors", []).extend(warnings)
        return outcome

    def _outcome(self, path: str | None, summary: dict[str, Any], crashes: list[dict[str, Any]],
                 stderr: list[str]) -> dict[str, Any]:
        name = path if path is not None else NO_INPUT
        report = parse_report(stderr)
        crash = crashes[0] if crashes else _signal_death(summary)
        if crash is None and report is not None and summary.get("ended") != "timeout":
            crash = _sanitizer_exit(summary, stderr)
        if crash is None:
            return {"input": name, "status": "timeout" if summary.get("ended") == "timeout" else "clean",
                    "crash": None}
        if report is not None:
            crash["sanitizer"] = report
        annotate(crash, self.rules)
        return {"input": name, "status": "crash", "crash": normalize_crash(crash)}


def _with_debug_strings(table: Any) -> Any:
    """The handler table with an (empty) debug_string handler, so stderr lines reach `emit`."""
    from ..compiler.table import Handler

    if EventCode.OUTPUT_DEBUG_STRING_EVENT in table.by_event:
        return table
    by_event = dict(table.by_event)
    by_event[EventCode.OUTPUT_DEBUG_STRING_EVENT] = Handler("debug_string", ())
    return dataclasses.replace(table, by_event=by_event)


def _signal_death(summary: dict[str, Any]) -> dict[str, Any] | None:
    """A crash record for a death by a signal the engine saw no fault for (SIGTRAP from an
    int3, SIGKILL from outside): it still ended the program, so triage counts it."""
    sig = summary.get("signal")
    if not sig or summary.get("ended") == "timeout":
        return None
    return {"event": "crash", "code": int(EventCode.EXCEPTION_DEBUG_EVENT), "exception": "SIGNAL",
            "exception_code": hex(ExceptionCode.SIGNAL), "signal": sig, "address": None,
            "fault_address": None, "access": None, "instruction": None, "module": None, "symbol": None,
            "frames": [], "registers": {}, "disassembly": []}


def _sanitizer_exit(summary: dict[str, Any], stderr: list[str]) -> dict[str, Any]:
    """A crash record for a sanitizer that reported and then exited (abort_on_error=0 set
    where triage cannot override it: a wrapper script's own ASAN_OPTIONS, say) or went on
    (UBSan without halt_on_error): the report is the finding. Its frames are the report's
    stack, which is all that is left of the moment of the bug."""
    from ..analysis.sanitizer import report_frames

    return {"event": "crash", "code": int(EventCode.EXCEPTION_DEBUG_EVENT), "exception": "SIGNAL",
            "exception_code": hex(ExceptionCode.SIGNAL), "signal": None, "exit_code": summary.get("exit_code"),
            "address": None, "fault_address": None, "access": None, "instruction": None, "module": None,
            "symbol": None, "frames": report_frames(stderr), "registers": {}, "disassembly": []}


@contextlib.contextmanager
def _target_output_hidden(hide_stderr: bool) -> Iterator[None]:
    """Point fd 1 (and with `hide_stderr` fd 2) at /dev/null while a target runs: it
    inherits our stdout, where the report goes; and the engine passes its stderr
    through to ours, where a corpus of sanitizer reports would bury the progress bar."""
    fds = (1, 2) if hide_stderr else (1,)
    saved = [os.dup(fd) for fd in fds]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stdout.flush()
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, old in zip(fds, saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(devnull)


@contextlib.contextmanager
def _pinned(pin: bool) -> Iterator[None]:
    """This process on the CPU it is on, for the inputs run here, as each parallel worker
    is on its own (HOUSE rule 12). The engine pins per run anyway; doing it once saves
    the migration each pin and unpin cost, 0.5-1 ms per input under load."""
    cpu = _current_cpu() if pin and hasattr(os, "sched_setaffinity") else None
    if cpu is None:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def _current_cpu() -> int | None:
    # /proc/self/stat field 39 (processor): the CPU this process last ran on.
    try:
        with open("/proc/self/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def recipe_path(recipe: str | None) -> str:
    from ..recipe.library import shipped_recipe_path

    if recipe is not None and (Path(recipe).exists() or "/" in recipe or recipe.endswith((".yaml", ".yml"))):
        return recipe
    path = shipped_recipe_path(recipe or DEFAULT_RECIPE)
    if path is None:
        raise UsageError(f"no recipe file '{recipe}' and no shipped recipe of that name")
    return str(path)


# -- worker processes -------------------------------------------------------------
_worker: Worker | None = None
# The parent's compiled Worker, for workers forked from it (None in a spawned one).
_inherited: Worker | None = None


def _init_worker(config: TriageConfig, cpus: Any) -> None:
    global _worker
    cpu = cpus.get()
    if cpu is not None and config.pin_cpu:
        # HOUSE rule 12: each worker and its targets on a CPU of their own.
        os.sched_setaffinity(0, {cpu})
    _worker = _inherited if _inherited is not None else Worker(config, quiet_stderr=True)


def _work(item: tuple[int, str | None]) -> tuple[int, dict[str, Any]]:
    index, path = item
    assert _worker is not None
    return index, _worker.run(path)


def _run_parallel(config: TriageConfig, paths: list[str | None], progress: Progress | None,
                  parent: Worker | None = None, done_before: int = 0) -> list[dict[str, Any]]:
    global _inherited
    # 'fork' while the parent has one thread: the workers start with its modules
    # imported and its plan compiled (a spawned worker redoes both, about a second of
    # CPU each, more than 50 crashes take). 'spawn' otherwise: fork would copy
    # another thread's locks half-held (a stderr pump of an embedding program's run).
    # Imported here: multiprocessing brings socket, selectors and pickle, 30-80 ms of
    # start-up that a --jobs 1 run never uses.
    import multiprocessing

    forking = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if forking else "spawn")
    _inherited = parent if forking else None
    cpus = ctx.Queue()
    available = sorted(os.sched_getaffinity(0))
    for i in range(config.jobs):
        cpus.put(available[i % len(available)] if available else None)
    outcomes: list[dict[str, Any] | None] = [None] * len(paths)
    try:
        with ctx.Pool(config.jobs, initializer=_init_worker, initargs=(config, cpus)) as pool:
            for done, (index, outcome) in enumerate(pool.imap_unordered(_work, list(enumerate(paths))), 1):
                outcomes[index] = outcome
                if progress is not None:
                    progress(done_before + done, done_before + len(paths), outcome)
    finally:
        _inherited = None
    return [o for o in outcomes if o is not None]


def triage(config: TriageConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the triage `config` describes; return the report (SPEC section 6).

    With jobs > 1 the workers are spawned processes: a script calling this must
    guard its entry point with `if __name__ == "__main__":`, as multiprocessing requires."""
    cores: list[str] = []
    if config.cores:
        from .cores import check_cores, collect_cores

        if config.command or config.inputs is not None:
            raise UsageError("--core triages core files and runs nothing: give no command and no --inputs")
        cores = collect_cores(config.cores, collect_inputs)
        if not cores:
            raise UsageError(f"--core {' '.join(config.cores)}: no core files there")
        paths: list[str | None] = list(select_shard(cores, config.shard))
        check_cores([p for p in paths if p is not None])
    elif not config.command:
        raise UsageError("triage needs a command after `--` (or core files: --core CORE)")
    elif config.inputs is not None:
        paths = list(select_shard(collect_inputs(config.inputs), config.shard))
    else:
        paths = [None]
    worker = Worker(config, quiet_stderr=True)     # compiles here first: recipe errors surface once
    outcomes = []
    # With jobs > 1 the first tenth of the inputs (1 to WARM_INPUTS) runs here, before the
    # workers fork: they start with the program's and its libraries' symbols, CFI, line
    # tables and inlined calls read for the code those crashes went through (50-300 ms of
    # CPU per new path, that each worker would otherwise spend again) and every module of
    # a run imported. A forked worker inherits them; a spawned one (another thread
    # running) starts cold as before.
    warm = max(1, min(WARM_INPUTS, len(paths) // 10))
    serial = paths if config.jobs <= 1 or len(paths) <= warm else paths[:warm]
    with _pinned(config.pin_cpu and not config.cores):
        for done, path in enumerate(serial, 1):
            outcomes.append(worker.run(path))
            if progress is not None:
                progress(done, len(paths), outcomes[-1])
    if len(serial) < len(paths):
        outcomes += _run_parallel(config, paths[len(serial):], progress, worker, done_before=len(serial))
    return build_report(report_meta(config, worker, cores[0] if cores else None), outcomes)


def report_meta(config: TriageConfig, worker: Worker, first_core: str | None = None) -> dict[str, Any]:
    """The provenance a report carries: command, tool, recipe, target build id, shard.

    For core files the command and target are the program of the first core of the
    whole sorted list (every shard names the same one), its build id the core's."""
    from ..version import __version__
    from ..analysis.classify import rules_digest

    recipe = worker.plan.recipe
    build_id = None
    command = list(config.command)
    argv0 = worker.plan.target.argv[0] if worker.plan.target.argv else None
    if first_core is not None:
        from .cores import core_target

        program, build_id = core_target(first_core, config.exe)
        command, argv0 = [program], None
    if argv0:
        try:
            from ..symbols.elf import open_image
            build_id = open_image(argv0).build_id
        except Exception:  # noqa: BLE001 - provenance is best effort; a script has no build id
            build_id = None
    return {
        "command": command,
        "tool": {"name": "instrument", "version": __version__},
        "recipe": {"name": recipe.name, "sha256": recipe.sha256},
        "rules": {"sha256": rules_digest(worker.rules)},
        "target": {"path": command[0], "build_id": build_id},
        "shard": {"index": config.shard[0], "count": config.shard[1]} if config.shard else None,
    }
