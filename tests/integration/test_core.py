"""`instrument triage --core`: a core file gives the crash record the live run gives (class, major hash).

Cores are made two ways: by the kernel (RLIMIT_CORE raised for the child only,
when /proc/sys/kernel/core_pattern writes a plain file into the crashing
program's folder; nothing about the machine is changed), and by gdb's
generate-core-file at the fatal signal, which works whatever core_pattern says.
The kernel leaves program text out of the core (read back from the mapped
files); gdb writes everything and an NT_SIGINFO per thread.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from instrument.backend.core import open_core
from instrument.errors import DebuggerError
from tests.conftest import TARGETS, run_cli

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
# Signals a crash program raises on its way to the fatal one: gdb must let them through.
PASSED_SIGNALS = "SIGUSR1 SIGUSR2 SIGALRM SIGCHLD SIGPIPE"


def crash_programs() -> list[str]:
    """Every crash program of tests/targets: crash_*.c and their `//! variant`s."""
    names = []
    for source in sorted(TARGETS.glob("crash_*.c")):
        names.append(source.stem)
        names += [f"{source.stem}-{m}" for m in re.findall(r"^//!\s*variant\s+([\w-]+)\s*:", source.read_text(), re.M)]
    return names


def kernel_can_dump() -> bool:
    """Whether the kernel writes cores as plain files relative to the crashing process's cwd."""
    try:
        pattern = CORE_PATTERN.read_text().strip()
    except OSError:
        return False
    return bool(pattern) and not pattern.startswith("|") and "/" not in pattern


def _unlimited_core() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


def kernel_core(program: str, folder: Path) -> Path | None:
    folder.mkdir(parents=True)
    subprocess.run([program], cwd=folder, preexec_fn=_unlimited_core, capture_output=True, timeout=60)
    made = [p for p in folder.iterdir() if p.is_file()]
    return made[0] if len(made) == 1 else None


def gdb_core(program: str, path: Path) -> Path | None:
    commands = [f"handle {PASSED_SIGNALS} nostop noprint pass", "set disable-randomization off",
                "run", f"generate-core-file {path}"]
    args = ["gdb", "-batch", "-nx", *[a for c in commands for a in ("-ex", c)], program]
    subprocess.run(args, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    return path if path.exists() else None


def live(program: str) -> tuple[str, str, list[str]]:
    """(class, major hash, errors) of the live triage of `program`."""
    proc = run_cli("triage", "--quiet", "--", program, timeout=120)
    assert proc.returncode == 1, proc.stderr
    bucket = json.loads(proc.stdout)["buckets"][0]
    return bucket["class"], bucket["hash"]["major"], bucket["crash"].get("errors", [])


def by_input(report: dict) -> dict[str, tuple[str, str, list[str]]]:
    return {name: (b["class"], b["hash"]["major"], b["crash"].get("errors", []))
            for b in report["buckets"] for name in b["inputs"]}


def frames_of(report: dict, name: str) -> list[str]:
    from instrument.analysis.signature import frame_key
    bucket = next(b for b in report["buckets"] if name in b["inputs"])
    return [f"{frame_key(f)} ({f.get('method', 'cfi')})" for f in bucket["crash"]["frames"]]


@pytest.fixture(scope="module")
def cores(targets, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """program -> {"kernel": core, "gdb": core}, for every crash program, as available here."""
    root = tmp_path_factory.mktemp("cores")
    made: dict[str, dict[str, Path]] = {}
    for name in crash_programs():
        made[name] = {}
        if kernel_can_dump():
            core = kernel_core(targets[name], root / "kernel" / name)
            if core is not None:
                made[name]["kernel"] = core
        if shutil.which("gdb"):
            (root / "gdb").mkdir(exist_ok=True)
            core = gdb_core(targets[name], root / "gdb" / f"{name}.core")
            if core is not None:
                made[name]["gdb"] = core
    if not any(made.values()):
        pytest.skip("no way to make a core file here (core_pattern pipes elsewhere and no gdb)")
    return made


def test_every_crash_program_core_matches_the_live_record(targets, cores):
    """Class and major hash of `triage --core` equal those of the live `triage -- ./prog`, and so do
    the record's errors (a recipe's log of a symbol-less pc fails alike; the backend warns of nothing)."""
    # No crash program may drop out of the comparison for want of a core.
    assert not [name for name, found in cores.items() if not found], cores
    paths = {str(core): (name, how) for name, found in cores.items() for how, core in found.items()}
    proc = run_cli("triage", "--quiet", "--jobs", "1", "--core", *paths, timeout=300)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["counts"]["inputs"] == len(paths) == report["counts"]["crashes"]
    from_cores = by_input(report)
    mismatches = []
    for name, found in cores.items():
        expected = live(targets[name])
        for how, core in found.items():
            if from_cores[str(core)] != expected:
                mismatches.append(f"{name} ({how} core): {from_cores[str(core)]} != live {expected}; "
                                  f"frames {frames_of(report, str(core))}")
    assert not mismatches, "\n".join(mismatches)
    # Both ways of making cores were exercised, where this machine allows them.
    kinds = {how for found in cores.values() for how in found}
    assert kinds == {k for k, ok in (("kernel", kernel_can_dump()), ("gdb", bool(shutil.which("gdb")))) if ok}


def any_core(cores: dict[str, dict[str, Path]], name: str) -> Path:
    found = cores[name]
    if not found:
        pytest.skip(f"no core of {name}")
    return found.get("kernel") or found["gdb"]


def test_the_threads_and_the_crashing_one(cores, targets):
    core = any_core(cores, "crash_thread")
    backend = open_core(str(core))
    try:
        assert len(backend.core.threads) == 4           # main, two idle threads, the worker
        crashed = backend.core.threads[0]
        assert crashed.tid != backend.pid               # the worker crashed, not main
        assert backend.core.siginfo is not None and backend.core.siginfo.signo == 11
        assert backend.core_modules[0].path == targets["crash_thread"]
        names = [os.path.basename(m.path) for m in backend.core_modules]
        assert "libc.so.6" in names and any(n.startswith("ld-linux") for n in names)
        assert backend.build_id and all(m.build_id for m in backend.core_modules if m.file)
    finally:
        backend.close()


def test_the_backend_refuses_every_change(cores):
    backend = open_core(str(any_core(cores, "crash_null_write")))
    try:
        pid = backend.attach(backend.pid)
        tid = backend.core.threads[0].tid
        rip = backend.registers(tid)["rip"]
        assert backend.read_memory(pid, rip, 4)          # text: from the core or the mapped file
        for refused in (lambda: backend.write_memory(pid, rip, b"\xcc"),
                        lambda: backend.registers(tid).__setitem__("rip", 0),
                        lambda: backend.set_hardware_breakpoint(pid, 0, rip, "execute", 1),
                        lambda: backend.set_memory_breakpoint(pid, rip, 1, "any"),
                        lambda: backend.single_step(tid),
                        lambda: backend.call_function(pid, rip)):
            with pytest.raises(DebuggerError, match="read-only"):
                refused()
        assert backend.capabilities.read_only
    finally:
        backend.close()


def test_a_recipe_that_changes_the_target_is_refused(cores, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nname: changes\ndescription: d\nbreakpoints:\n  - id: b\n    at: main\n"
                      "crash:\n  - set: {rax: 1}\n  - log: \"{exception}\"\n")
    proc = run_cli("triage", "--recipe", str(recipe), "--core", str(any_core(cores, "crash_null_write")))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all("read-only" in line and str(recipe) in line for line in lines), proc.stderr


def test_bad_core_files_are_one_line_and_exit_3(targets, tmp_path, cores):
    truncated = tmp_path / "truncated.core"
    truncated.write_bytes(any_core(cores, "crash_abort").read_bytes()[:1000])
    text = tmp_path / "notes.txt"
    text.write_text("not a core\n")
    for path, says in ((truncated, "truncated"), (text, "not a core file"),
                       (Path(targets["crash_abort"]), "triage a program with")):
        proc = run_cli("triage", "--core", str(path))
        assert proc.returncode == 3, (path, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr
    assert run_cli("triage", "--core", str(tmp_path / "absent")).returncode == 2
    assert run_cli("triage", "--exe", targets["crash_abort"], "--", targets["crash_abort"]).returncode == 2


def test_a_moved_program_is_found_with_exe(targets, tmp_path):
    """The core names a program that is gone: --exe gives it back; without it the record says so."""
    if not shutil.which("gdb"):
        pytest.skip("needs gdb")
    program = tmp_path / "crash_deep"
    shutil.copy(targets["crash_deep"], program)
    core = gdb_core(str(program), tmp_path / "deep.core")
    assert core is not None
    moved = tmp_path / "moved" / "crash_deep"
    moved.parent.mkdir()
    program.rename(moved)
    expected = live(targets["crash_deep"])
    found = run_cli("triage", "--core", str(core), "--exe", str(moved))
    assert found.returncode == 1, found.stderr
    bucket = json.loads(found.stdout)["buckets"][0]
    assert (bucket["class"], bucket["hash"]["major"], bucket["crash"].get("errors", [])) == expected
    lost = run_cli("triage", "--core", str(core))
    crash = json.loads(lost.stdout)["buckets"][0]["crash"]
    assert any("is missing" in e and "--exe" in e for e in crash.get("errors", [])), crash.get("errors")


def test_a_folder_of_cores_in_two_jobs_and_shards(cores, tmp_path):
    folder = tmp_path / "cores"
    folder.mkdir()
    for name in ("crash_null_read", "crash_div_zero", "crash_abort"):
        shutil.copy(any_core(cores, name), folder / f"{name}.core")
    one = run_cli("triage", "--quiet", "--jobs", "2", "--core", str(folder))
    assert one.returncode == 1, one.stderr
    whole = json.loads(one.stdout)
    assert whole["counts"] == {"inputs": 3, "crashes": 3, "unique": 3, "timeouts": 0, "clean": 0}
    shards = []
    for k in (1, 2):
        out = tmp_path / f"s{k}.json"
        proc = run_cli("triage", "--quiet", "--shard", f"{k}/2", "--core", str(folder), "-o", str(out))
        assert proc.returncode == 1, proc.stderr
        shards.append(str(out))
    merged = run_cli("merge", *shards)
    assert merged.returncode == 1, merged.stderr
    report = json.loads(merged.stdout)
    assert by_input(report) == by_input(whole) and report["command"] == whole["command"]


def test_a_core_of_a_live_process_holds_no_crash(tmp_path):
    """gdb's core of a process it attached to (stopped by SIGSTOP): a clean input, not a crash."""
    if not shutil.which("gdb"):
        pytest.skip("needs gdb")
    sleeper = subprocess.Popen([shutil.which("sleep") or "/bin/sleep", "30"])
    try:
        core = tmp_path / "sleep.core"
        subprocess.run(["gdb", "-batch", "-nx", "-p", str(sleeper.pid), "-ex", f"generate-core-file {core}"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert core.exists()
    proc = run_cli("triage", "--core", str(core))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"] == {"inputs": 1, "crashes": 0, "unique": 0, "timeouts": 0, "clean": 1}


def test_a_core_names_the_crashing_thread_and_process(cores, targets):
    """Attribution from a core (issue 16): the thread index comes from the tids' order
    (a core does not say which thread was created when), argv from NT_PRPSINFO."""
    core = any_core(cores, "crash_thread3")
    proc = run_cli("triage", "--quiet", "--core", str(core), timeout=120)
    assert proc.returncode == 1, proc.stderr
    crash = json.loads(proc.stdout)["buckets"][0]["crash"]
    assert crash["thread"] == {"index": 2, "main": False, "start_routine": "crasher", "name": "crash_thread3"}
    assert crash["process"]["depth"] == 0 and crash["process"]["exe"] == targets["crash_thread3"]
    assert crash["process"]["argv"][0].endswith("crash_thread3")


# triage_input's crash words (its input file names one; `hang` does not crash).
TRIAGE_INPUT_WORDS = ("null-read", "null-write", "wild-write", "div", "abort", "double-free", "fork", "thread")


def _other_crashes() -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """(name, program, args, input file's text) of the crash programs beside crash_*.c
    that die by a signal dumping core: every mode of triage_rules (each classification
    rule and gap it reaches), every crash word of triage_input (an input file holds it),
    the forked child of fork_crash, bk_segv. Not here: raise(SIGTERM) (dumps no core),
    and the sanitizer programs, whose class is read from their stderr report, not a core."""
    from tests.integration.test_triage_rules import CORPUS, GAPS

    modes = sorted({mode for program, mode, *_ in CORPUS + GAPS if program == "triage_rules" and mode})
    out: list[tuple[str, str, tuple[str, ...], str | None]] = [
        (f"triage_rules {m}", "triage_rules", (m,), None) for m in modes if m != "sigterm"]
    out += [(f"triage_input {w}", "triage_input", (), w) for w in TRIAGE_INPUT_WORDS]
    return out + [("fork_crash", "fork_crash", (), None), ("bk_segv", "bk_segv", (), None)]


@pytest.mark.skipif(not kernel_can_dump(), reason="core_pattern does not write plain core files here")
def test_every_other_crash_program_core_matches_the_live_record(targets, tmp_path):
    """As test_every_crash_program_core_matches_the_live_record, for the crash programs that
    take a mode or crash in a child (kernel cores: one run each, no gdb)."""
    made: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for name, program, args, text in _other_crashes():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        if text is not None:
            (tmp_path / f"{name.replace(' ', '-')}.input").write_text(text + "\n")
            args = (*args, str(tmp_path / f"{name.replace(' ', '-')}.input"))
        subprocess.run([targets[program], *args], cwd=folder, preexec_fn=_unlimited_core, capture_output=True,
                       timeout=60)
        found = [p for p in folder.iterdir() if p.is_file()]
        assert len(found) == 1, f"{name}: {found}"
        made[name] = (found[0], (targets[program], *args))
    proc = run_cli("triage", "--quiet", "--jobs", "1", "--core", *[str(c) for c, _ in made.values()], timeout=300)
    assert proc.returncode == 1, proc.stderr
    from_cores = by_input(json.loads(proc.stdout))
    mismatches = []
    for name, (core, argv) in made.items():
        got = run_cli("triage", "--quiet", "--", *argv, timeout=120)
        assert got.returncode == 1, got.stderr
        bucket = json.loads(got.stdout)["buckets"][0]
        expected = (bucket["class"], bucket["hash"]["major"], bucket["crash"].get("errors", []))
        if from_cores[str(core)] != expected:
            mismatches.append(f"{name}: core {from_cores[str(core)]} != live {expected}")
    assert not mismatches, "\n".join(mismatches)
