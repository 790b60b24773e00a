"""`instrument run` end to end on real programs through the ptrace backend (SPEC 3-5, issue 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_recipe_jsonl

HEADER = "version: 1\nname: t\ndescription: test recipe\n"


def recipe(tmp_path: Path, body: str, name: str = "r.yaml") -> str:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return str(path)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def run_jsonl(tmp_path: Path, body: str, *command: str, extra: tuple[str, ...] = (), timeout: float = 120):
    return run_recipe_jsonl(tmp_path, HEADER + body, *command, extra=extra, timeout=timeout)


def test_loop_hits_every_call_in_order(targets, tmp_path):
    n = 200
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - id: on-hit\n    at: hit\n    actions:\n"
                           "      - log: '{arg0}'\n      - log: {registers: [rdi]}\n", targets["loop"], str(n))
    assert proc.returncode == 0, proc.stderr
    hits = [r for r in recs if r["event"] == "breakpoint"]
    assert [int(r["message"]) for r in hits] == list(range(n))
    assert [r["hits"] for r in hits] == list(range(1, n + 1))
    assert hits[5]["registers"] == {"rdi": "0x5"}
    assert hits[0]["symbol"] == "hit" and hits[0]["address"].startswith("0x") and hits[0]["code"] == 1
    assert all(set(r) >= {"event", "code", "pid", "tid", "time"} for r in recs)
    # The target's own output passes through unchanged.
    assert f"sum={n * (n - 1)} counter={n * (n - 1) // 2}" in proc.stdout
    summary = recs[-1]
    assert summary["event"] == "summary" and summary["exit_code"] == 0 and summary["breakpoints"] == {"on-hit": n}
    assert summary["recipe"]["name"] == "t" and len(summary["recipe"]["sha256"]) == 64
    assert summary["target"]["build_id"]


def test_condition_and_limit(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - at: hit\n    when: 'arg0 % 3 == 0'\n    limit: 4\n"
                           "    actions:\n      - log: '{arg0} {hits}'\n", targets["loop"], "50")
    assert [r["message"] for r in recs if r["event"] == "breakpoint"] == ["0 1", "3 2", "6 3", "9 4"]
    assert "sum=2450" in proc.stdout


def test_pid_and_tid_in_a_breakpoint_log(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - at: hit\n    actions:\n      - log: 'pid={pid} tid={tid}'\n",
                           targets["loop"], "2")
    hits = [r for r in recs if r["event"] == "breakpoint"]
    assert [h["message"] for h in hits] == [f"pid={h['pid']} tid={h['tid']}" for h in hits] and len(hits) == 2
    assert "errors" not in hits[0], hits[0]


def test_timeout_kills_the_processes_the_target_started(targets, tmp_path):
    proc = run_cli("run", recipe(tmp_path, ""), "--timeout", "1", "--", targets["fork_sleep"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    child = int(proc.stdout.split("child=")[1].split()[0])
    time.sleep(0.2)
    try:
        with open(f"/proc/{child}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z", "X"), f"the untraced child {child} is still running"


@pytest.mark.parametrize("at, kind", [("strcpy", "soft"), ("libc.so.6!strcpy", "soft"), ("strcpy", "hardware")])
def test_a_breakpoint_on_an_indirect_function_hits_every_call(targets, tmp_path, at, kind):
    # strcpy is the resolver ld.so runs once; the calls go to what it returned.
    proc, recs = run_jsonl(tmp_path, f"breakpoints:\n  - id: copy\n    at: '{at}'\n    type: {kind}\n",
                           targets["ifunc_calls"], "7")
    assert proc.returncode == 0 and "len=6" in proc.stdout, proc.stderr
    hits = [r for r in recs if r["event"] == "breakpoint"]
    assert len(hits) == 7 and {h["symbol"] for h in hits} == {"libc.so.6!strcpy"}
    assert "errors" not in recs[-1], recs[-1]


@pytest.mark.parametrize("program, at, calls", [
    ("ifunc_calls-static", "strcpy", 7),             # resolved by libc's start-up (IRELATIVE)
    ("ifunc_dlopen", "libm.so.6!floorf", 5),         # resolved when dlopen() relocates libm
])
def test_an_indirect_function_resolved_after_the_breakpoint_is_set(targets, tmp_path, program, at, calls):
    proc, recs = run_jsonl(tmp_path, f"breakpoints:\n  - id: f\n    at: '{at}'\n", targets[program], str(calls))
    assert proc.returncode == 0, proc.stderr
    assert recs[-1]["breakpoints"] == {"f": calls} and "errors" not in recs[-1], recs[-1]


def test_set_argument_changes_decision(targets, tmp_path):
    proc, _ = run_jsonl(tmp_path, "breakpoints:\n  - at: decide\n    actions:\n      - set: {rdi: 99}\n",
                        targets["loop"], "1", "5")
    assert "decision=1" in proc.stdout


def test_return_action_changes_decision(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - at: decide\n    actions:\n      - return: 1\n",
                           targets["loop"], "1", "5")
    assert "decision=1" in proc.stdout, proc.stderr
    assert [r for r in recs if r["event"] == "breakpoint"]


def test_write_patches_a_global_string(targets, tmp_path):
    proc, _ = run_jsonl(tmp_path, "breakpoints:\n  - at: decide\n    actions:\n"
                        "      - write: {at: message, string: patched!}\n", targets["loop"], "1")
    assert "message=patched!" in proc.stdout


def test_dump_returns_exact_bytes(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - at: decide\n    actions:\n"
                           "      - dump: {at: buffer, size: 16}\n      - dump: {at: buffer, size: 4, file: buf.bin}\n",
                           targets["loop"], "1", extra=("--out-dir", str(tmp_path / "o")))
    hit = next(r for r in recs if r["event"] == "breakpoint")
    assert hit["dump"][0]["hex"] == "deadbeef0102030405060708090a0b0c"
    assert (tmp_path / "o" / "buf.bin").read_bytes() == bytes.fromhex("deadbeef")


def test_on_return_pairs_recursion(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - id: f\n    at: fact\n    actions:\n      - log: 'enter {arg0}'\n"
                           "    on_return:\n      - log: 'fact({arg0}) = {retval}'\n", targets["loop"], "1")
    returns = [r["message"] for r in recs if r["event"] == "return"]
    assert returns == ["fact(1) = 1", "fact(2) = 2", "fact(3) = 6", "fact(4) = 24", "fact(5) = 120"]
    assert "fact=120" in proc.stdout


def test_two_breakpoints_on_one_function_both_see_every_return(targets, tmp_path):
    on_return = "    on_return:\n      - log: '{arg0} {retval}'\n"
    proc, recs = run_jsonl(tmp_path, f"breakpoints:\n  - id: a\n    at: fact\n{on_return}"
                           f"  - id: b\n    at: fact\n{on_return}", targets["loop"], "2")
    assert proc.returncode == 0, proc.stderr
    for bp in ("a", "b"):
        assert [r["message"] for r in recs if r["event"] == "return" and r["id"] == bp] == \
            ["1 1", "2 2", "3 6", "4 24", "5 120"]


def test_on_return_forgets_frames_a_longjmp_unwound(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - id: f\n    at: f\n"
                           "    on_return:\n      - log: 'f({arg0}) -> {retval}'\n", targets["longjmp_out"])
    assert proc.returncode == 0 and "s=20" in proc.stdout, proc.stderr
    assert [r["message"] for r in recs if r["event"] == "return"] == ["f(0) -> 0", "f(2) -> 20"]


def test_breakpoint_in_dlopened_library(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "breakpoints:\n  - at: plugin.so!plugin_work\n    actions:\n      - log: '{arg0}'\n"
                           "events:\n  load_dll:\n    - log: 'loaded {module}'\n",
                           targets["plugin_host"], targets["plugin"])
    assert proc.returncode == 0, proc.stderr
    loads = [r for r in recs if r["event"] == "load_dll"]
    assert any(r["module"].endswith("plugin.so") and r["code"] == 6 for r in loads)
    assert [r["message"] for r in recs if r["event"] == "breakpoint"] == ["7"]
    assert "plugin_work(7)=22" in proc.stdout


@pytest.mark.parametrize("kind, per_call", [("soft", 1), ("hardware", 1), ("memory", 2)])
def test_breakpoints_in_a_library_arm_again_at_every_load(targets, tmp_path, kind, per_call):
    at = "plugin.so!plugin_work" if kind != "memory" else "plugin.so!plugin_calls"
    size = "    size: 4\n" if kind == "memory" else ""
    proc, recs = run_jsonl(tmp_path, f"breakpoints:\n  - id: pw\n    at: {at}\n    type: {kind}\n{size}"
                           "  - id: done\n    at: done\n    actions:\n      - disable: pw\n",
                           targets["plugin_cycles"], targets["plugin"], "5", "3")
    assert proc.returncode == 0 and "sum=60" in proc.stdout, proc.stderr
    assert recs[-1]["breakpoints"] == {"pw": 15 * per_call, "done": 1}
    # Disabling after the last unload writes nothing: the library's memory is gone.
    done = [r for r in recs if r["event"] == "breakpoint" and r["id"] == "done"]
    assert "errors" not in done[0] and "errors" not in recs[-1], (done, recs[-1])


def test_a_followed_child_that_execs_gets_the_breakpoints_of_its_new_image(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "target:\n  follow_forks: true\nbreakpoints:\n  - id: main\n    at: main\n",
                           targets["fork_exec"], targets["loop"], "2")
    assert proc.returncode == 0 and "child exited 0" in proc.stdout, proc.stderr
    hits = [r for r in recs if r["event"] == "breakpoint"]
    assert len(hits) == 2 and len({h["pid"] for h in hits}) == 2     # the parent's main, then loop's


def test_all_events_of_bin_true(tmp_path):
    proc, recs = run_jsonl(tmp_path, "", "/bin/true", extra=("--all-events",))
    assert proc.returncode == 0, proc.stderr
    events = [r for r in recs if r["event"] != "summary"]
    assert events[0]["event"] == "create_process" and events[0]["code"] == 3
    loaded = [os.path.basename(r["module"]) for r in events if r["event"] == "load_dll"]
    assert any(m.startswith("ld-linux") for m in loaded) and "libc.so.6" in loaded
    assert events[-1]["event"] == "exit_process" and events[-1]["code"] == 5 and events[-1]["exit_code"] == 0


def test_stderr_becomes_debug_strings(targets, tmp_path):
    proc, recs = run_jsonl(tmp_path, "events:\n  debug_string:\n    - log: 'said {text}'\n", targets["stderr_writer"])
    assert "first warning" in proc.stderr and "normal output" in proc.stdout
    texts = [r["text"] for r in recs if r["event"] == "debug_string"]
    assert [t.strip() for t in texts] == ["first warning", "second warning"]
    assert recs[-1]["exit_code"] == 3 and proc.returncode == 0


def test_the_last_stderr_line_without_a_newline_is_reported(tmp_path):
    script = "i=0; while [ $i -lt 200 ]; do echo line$i >&2; i=$((i+1)); done; printf tail >&2"
    for _ in range(5):
        proc, recs = run_jsonl(tmp_path, "events:\n  debug_string:\n    - log: '{text}'\n", "/bin/sh", "-c", script)
        texts = [r["text"] for r in recs if r["event"] == "debug_string"]
        assert len(texts) == 201 and texts[-1] == "tail", texts[-3:]


def test_a_background_child_holding_stderr_does_not_hold_up_the_end(tmp_path):
    # sh exits at once; its background child keeps the stderr pipe open for 30 s.
    script = "echo bye >&2; sleep 30 >/dev/null & echo $!; exit 0"
    proc, recs = run_jsonl(tmp_path, "events:\n  debug_string:\n    - log: '{text}'\n", "/bin/sh", "-c", script)
    child = int(proc.stdout.split()[0])
    try:
        assert [r["text"] for r in recs if r["event"] == "debug_string"] == ["bye"]
        assert recs[-1]["exit_code"] == 0
        # The session is over while the child still holds the pipe open: it did not wait
        # for that end of file (how soon it ends: bench/latency.py).
        assert _running(child), "waited for the background child's end of file"
    finally:
        os.kill(child, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap an orphan)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def test_dash_output_is_stdout(targets, tmp_path):
    proc = run_cli("run", recipe(tmp_path, ""), "--format", "jsonl", "-o", "-", "--", targets["loop"], "1",
                   cwd=str(tmp_path))
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1])["event"] == "summary"
    assert not (tmp_path / "-").exists()


def test_a_reader_that_goes_away_ends_the_run_with_141(targets, tmp_path):
    exe = Path(sys.executable).parent / "instrument"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "instrument"]
    proc = subprocess.Popen([*cmd, "run", recipe(tmp_path, "breakpoints:\n  - at: hit\n"), "--",
                             targets["loop"], "1000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"[")
    proc.stdout.close()                          # like `| head -1`
    assert proc.wait(timeout=60) == 141
    assert b"Traceback" not in proc.stderr.read()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _hits(out: Path) -> int:
    return out.read_text().count('"breakpoint"') if out.exists() else 0


def test_job_control_stops_the_target_as_without_a_debugger(targets, tmp_path):
    # SIGSTOP stops it (no ticks while stopped), SIGCONT lets it finish.
    out = tmp_path / "out.jsonl"
    exe = Path(sys.executable).parent / "instrument"
    tool = subprocess.Popen([str(exe), "run", recipe(tmp_path, "breakpoints:\n  - at: tick\n"), "--format", "jsonl",
                             "-o", str(out), "--", targets["sleeper"], "100"], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(tool.stdout.readline().split("=")[1])
        while _hits(out) < 5:
            time.sleep(0.01)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.3)
        stopped_at = _hits(out)
        time.sleep(0.5)
        assert _hits(out) == stopped_at and _state(pid) in "tT"
        os.kill(pid, signal.SIGCONT)
        rest, _ = tool.communicate(timeout=60)
        assert tool.returncode == 0 and "done 100" in rest
        assert json.loads(out.read_text().splitlines()[-1])["breakpoints"] == {"tick": 100}
    finally:
        if tool.poll() is None:
            tool.kill()


def test_attaching_to_a_stopped_process_leaves_it_stopped(targets, tmp_path):
    target = subprocess.Popen([targets["sleeper"], "50"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().startswith("pid=")
        os.kill(target.pid, signal.SIGSTOP)
        while _state(target.pid) != "T":
            time.sleep(0.01)
        out = tmp_path / "out.jsonl"
        proc = run_cli("run", recipe(tmp_path, "breakpoints:\n  - at: tick\n"), "--pid", str(target.pid),
                       "--timeout", "1", "--format", "jsonl", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert _hits(out) == 0 and _state(target.pid) == "T"       # still stopped, and untraced
        os.kill(target.pid, signal.SIGCONT)
        assert "done 50" in target.communicate(timeout=60)[0]
    finally:
        if target.poll() is None:
            target.kill()


def test_attach_then_sigterm_leaves_target_running(targets, tmp_path):
    target = subprocess.Popen([targets["sleeper"], "600"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().startswith("pid=")
        out = tmp_path / "att.jsonl"
        exe = Path(sys.executable).parent / "instrument"
        tool = subprocess.Popen([str(exe), "run", recipe(tmp_path, "breakpoints:\n  - at: tick\n"),
                                 "--pid", str(target.pid), "--format", "jsonl", "-o", str(out)],
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while time.time() < deadline and (not out.exists() or '"breakpoint"' not in out.read_text()):
            time.sleep(0.05)
        tool.send_signal(signal.SIGTERM)
        tool.wait(timeout=20)
        rest = target.communicate(timeout=30)[0]
        assert target.returncode == 0
        assert "done 600 sum=180300" in rest
        recs = records(out)
        assert any(r["event"] == "breakpoint" for r in recs)
        assert recs[-1]["event"] == "summary" and recs[-1]["ended"] in ("interrupted", "detached")
    finally:
        if target.poll() is None:
            target.kill()


def test_unknown_symbol_is_a_recipe_error(targets, tmp_path):
    proc = run_cli("run", recipe(tmp_path, "breakpoints:\n  - at: no_such_function\n"), "--", targets["loop"])
    assert proc.returncode == 2
    assert "r.yaml:5:9: error: unknown symbol 'no_such_function'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_program_exits_3(tmp_path):
    proc = run_cli("run", recipe(tmp_path, ""), "--", str(tmp_path / "nope"))
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "cannot start" in proc.stderr


def test_unattachable_pid_exits_3(tmp_path):
    proc = run_cli("run", recipe(tmp_path, ""), "--pid", "999999")
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "999999" in proc.stderr


@pytest.mark.parametrize("follow", [True, False])
def test_fork_child_traced_or_left_alone(targets, tmp_path, follow):
    body = (f"target:\n  follow_forks: {str(follow).lower()}\n"
            "breakpoints:\n  - at: work\n    actions:\n      - log: '{arg0}'\n")
    proc, recs = run_jsonl(tmp_path, body, targets["fork_work"])
    assert "child exited 0, work=2" in proc.stdout, proc.stdout + proc.stderr
    hits = [(r["pid"], r["message"]) for r in recs if r["event"] == "breakpoint"]
    parent = recs[-1]["pid"]          # the summary names the main process
    if follow:
        assert sorted(m for _, m in hits) == ["1", "100"]
        assert {p for p, m in hits if m == "100"} != {parent}
        assert len([r for r in recs if r["event"] == "summary"]) == 1
    else:
        assert hits == [(parent, "1")]
