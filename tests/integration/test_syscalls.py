"""The `syscalls:` section on real programs: its records equal strace's for the same run, a
`return:` fails a call, a `set:` changes one, bad names are recipe errors, attached targets work."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_recipe_jsonl

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="system call stops need ptrace"),
    pytest.mark.skipif(shutil.which("strace") is None, reason="the reference is strace"),
]

HEADER = "version: 1\nname: t\ndescription: syscalls test\n"
OPENAT_EXITS = """target:
  follow_forks: {follow}
syscalls:
  openat:
    on: exit
"""
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>")


def strace_lines(tmp_path: Path, *command: str) -> Counter[str]:
    """`strace -f -e trace=openat` of `command`: each call as `openat(...) = R`, unfinished
    calls joined with their resumption, strace's column padding taken out."""
    out = tmp_path / "strace.txt"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", str(out), *command],
                   check=True, capture_output=True, timeout=60)
    pending: dict[str, str] = {}
    calls: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        pid, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.startswith(("+++", "---")):
            continue
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[:-len("<unfinished ...>")].rstrip()
            continue
        m = _RESUMED.match(rest)
        if m:
            rest = pending.pop(pid) + rest[m.end():]
        calls[re.sub(r"\)\s+= ", ") = ", rest)] += 1
    return calls


def our_lines(records: list[dict]) -> Counter[str]:
    return Counter(f"{r['name']}({', '.join(r['args'].values())}) = {r['result']}"
                   for r in records if r["event"] == "syscall" and r["phase"] == "exit")


def compare_with_strace(tmp_path: Path, *command: str, follow: bool = True) -> list[dict]:
    proc, records = run_recipe_jsonl(tmp_path, HEADER + OPENAT_EXITS.format(follow=str(follow).lower()),
                                     *command)
    assert proc.returncode == 0, proc.stderr
    ours, theirs = our_lines(records), strace_lines(tmp_path, *command)
    assert ours == theirs
    assert sum(ours.values()) >= 3
    return records


def test_cat_opens_as_strace_shows_them(tmp_path):
    records = compare_with_strace(tmp_path, "cat", "/etc/hostname")
    assert any('"/etc/hostname"' in r["args"].get("pathname", "") for r in records if r["event"] == "syscall")
    summary = records[-1]
    assert summary["syscalls"]["stops"] == "seccomp-bpf" and summary["syscalls"]["calls"]["openat"] > 3


def test_ls_opens_as_strace_shows_them(tmp_path):
    records = compare_with_strace(tmp_path, "ls", "/")
    assert any("O_DIRECTORY" in r["args"]["flags"] for r in records if r["event"] == "syscall")


def test_threads_open_as_strace_shows_them(targets, tmp_path):
    records = compare_with_strace(tmp_path, targets["sys_threads"])
    tids = {r["tid"] for r in records if r["event"] == "syscall" and "sys_threads" in r["args"]["pathname"]}
    assert len(tids) == 4                       # every thread's calls, by its own tid
    failed = [r for r in records if r["event"] == "syscall" and "nonexistent" in r["args"]["pathname"]]
    assert len(failed) == 4 and all(r["errno"] == "ENOENT" and r["retval"] == -2 for r in failed)


def test_forking_script_opens_as_strace_shows_them(tmp_path):
    script = tmp_path / "forks.sh"
    script.write_text("cat /etc/hostname > /dev/null\nls / > /dev/null\n(cat /etc/hostname; echo x) > /dev/null\n")
    records = compare_with_strace(tmp_path, "/bin/sh", str(script))
    assert len({r["pid"] for r in records if r["event"] == "syscall"}) >= 3      # children too
    creat = [r for r in records if r["event"] == "syscall" and r["args"]["pathname"] == '"/dev/null"']
    assert creat and all(r["args"]["flags"] == "O_WRONLY|O_CREAT|O_TRUNC" and r["args"]["mode"] == "0666"
                         for r in creat)


def test_without_followed_forks_every_call_stops_and_the_records_are_the_same(tmp_path):
    records = compare_with_strace(tmp_path, "cat", "/etc/hostname", follow=False)
    stops = records[-1]["syscalls"]
    assert stops["stops"] == "PTRACE_SYSCALL" and "follow_forks" in stops["why"]


def test_return_at_entry_fails_the_call(tmp_path):
    body = """syscalls:
  openat:
    on: entry
    when: 'str(pathname) == "/etc/hostname"'
    actions:
      - return: -13
"""
    for follow in ("true", "false"):
        proc, records = run_recipe_jsonl(tmp_path, HEADER + f"target:\n  follow_forks: {follow}\n" + body,
                                         "cat", "/etc/hostname")
        assert proc.returncode == 0
        assert "/etc/hostname: Permission denied" in proc.stderr
        skipped = [r for r in records if r["event"] == "syscall"]
        assert len(skipped) == 1 and skipped[0]["skipped"] and skipped[0]["returned"] == -13


def test_set_of_writes_count_changes_the_output(targets, tmp_path):
    body = """syscalls:
  write:
    when: fd == 1
    actions:
      - set: {count: 2}
"""
    # sys_heavy 0 makes one write(1, "none\n", 5) and does not retry a short one.
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, targets["sys_heavy"], "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "no"
    entry, exit_ = [r for r in records if r["event"] == "syscall"]
    assert entry["args"] == {"fd": "1", "buf": '"none\\n"', "count": "5"}     # as the program asked
    assert exit_["args"]["count"] == "2" and exit_["retval"] == 2              # as the kernel ran it


def test_both_phases_pair_per_thread(targets, tmp_path):
    body = """target:
  follow_forks: true
syscalls:
  openat:
    when: 'str(pathname) == "/etc/hostname"'
    actions:
      - log: "{phase} {syscall} #{sysno} flags={flags:#x} arg2={arg2:#x}"
"""
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, targets["sys_threads"])
    assert proc.returncode == 0, proc.stderr
    mine = [r for r in records if r["event"] == "syscall"]
    by_tid: dict[int, list[str]] = {}
    for r in mine:
        by_tid.setdefault(r["tid"], []).append(r["phase"])
    assert len(by_tid) == 4 and all(p == ["entry", "exit"] for p in by_tid.values())
    assert all(r["message"] == f"{r['phase']} openat #257 flags=0x0 arg2=0x0" for r in mine)
    assert all(r["retval"] >= 3 for r in mine if r["phase"] == "exit")


@pytest.mark.parametrize("body, message", [
    ("syscalls:\n  opnat:\n    on: exit\n", "7:3: error: unknown x86-64 system call 'opnat' (did you mean 'openat'?)"),
    ("syscalls:\n  nosuch*:\n    on: exit\n", "7:3: error: no x86-64 system call matches 'nosuch*'"),
    ("syscalls:\n  9999:\n    on: exit\n", "7:3: error: unknown x86-64 system call '9999'"),
    ("syscalls:\n  write:\n    actions:\n      - set: {cnt: 1}\n",
     "9:15: error: set: 'cnt' is not an argument of write (fd, buf, count)"),
    ("syscalls:\n  write:\n    on: entry\n    when: retval < 0\n",
     "9:11: error: when: 'retval' is known only at the call's exit"),
    ("syscalls:\n  write:\n    on: sometimes\n", "8:9: error:"),
])
def test_bad_names_are_recipe_errors_with_their_place(tmp_path, body, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(HEADER + "target:\n  run: [cat, /etc/hostname]\n" + body)
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 2
    assert f"{recipe}:{message}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_attached_target_stops_through_ptrace_syscall(targets, tmp_path):
    opener = subprocess.Popen([targets["sys_threads"], "opener", "300"], stdout=subprocess.PIPE, text=True)
    try:
        assert opener.stdout is not None
        first = opener.stdout.readline()
        assert first.startswith("pid=")
        body = """syscalls:
  openat:
    on: exit
    limit: 3
  close:
    on: entry
    actions:
      - detach
"""
        recipe = tmp_path / "attach.yaml"
        recipe.write_text(HEADER + body)
        out = tmp_path / "out.jsonl"
        proc = run_cli("run", str(recipe), "--pid", str(opener.pid), "--format", "jsonl", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        import json
        records = [json.loads(line) for line in out.read_text().splitlines()]
        opens = [r for r in records if r["event"] == "syscall" and r["name"] == "openat"]
        assert len(opens) == 1 and opens[0]["args"]["pathname"] == '"/etc/hostname"' and opens[0]["retval"] >= 3
        summary = records[-1]
        assert summary["ended"] == "detached"
        assert summary["syscalls"]["stops"] == "PTRACE_SYSCALL" and "attached" in summary["syscalls"]["why"]
        # Let go without a filter: every later call of the target still works.
        rest, _ = opener.communicate(timeout=30)
        assert opener.returncode == 0 and "opened 300" in rest
    finally:
        if opener.poll() is None:
            opener.kill()
            opener.wait()


def test_the_engines_own_mprotect_never_stops_at_the_filter(targets, tmp_path):
    """A memory breakpoint's injected mprotect calls go through a filter that names mprotect
    without a record of their own, and the program's own mprotect calls are all reported."""
    body = """target:
  follow_forks: true
breakpoints:
  - id: arm
    at: ready
    actions:
      - enable: win
  - id: win
    at: u64[watch_ptr]
    type: memory
    size: 8
    enabled: false
syscalls:
  mprotect:
    on: exit
"""
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, targets["mem_page"], "global", "20")
    assert proc.returncode == 0, proc.stderr
    assert "global n=20 sum=" in proc.stdout and " ok" in proc.stdout
    summary = records[-1]
    assert summary["breakpoints"]["win"] == 3 * 20 + 1 and not summary.get("errors")
    assert summary["syscalls"]["stops"] == "seccomp-bpf"
    ours = our_lines(records)
    theirs = Counter()
    out = tmp_path / "mp.txt"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=mprotect", "-o", str(out), targets["mem_page"], "global", "20"],
                   check=True, capture_output=True, timeout=60)
    theirs.update(line.split(" ", 1)[1].strip() for line in out.read_text().splitlines() if "mprotect(" in line)
    assert sum(ours.values()) == sum(theirs.values())   # the loader's and libc's, none of ours
    time.sleep(0)


def test_a_detach_action_never_leaves_a_filter_behind(targets, tmp_path):
    """A process let go with a seccomp filter would see its named calls fail (ENOSYS): a recipe
    that can detach runs without one, and the target's later calls all work."""
    body = """target:
  follow_forks: true
syscalls:
  openat:
    on: exit
    when: 'str(pathname) == "/etc/hostname"'
    actions:
      - detach
"""
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, targets["sys_threads"], "opener", "20")
    assert proc.returncode == 0, proc.stderr
    summary = records[-1]
    assert summary["ended"] == "detached"
    assert summary["syscalls"]["stops"] == "PTRACE_SYSCALL" and "detach" in summary["syscalls"]["why"]
    assert "opened 20" in proc.stdout          # every open after the detach succeeded


def test_arming_a_memory_breakpoint_at_a_calls_entry_is_refused_with_a_reason(targets, tmp_path):
    """Changing page protections means running mprotect in a stopped thread; one stopped at a
    system call's entry would make (or lose) its own call first, so it is never used."""
    body = """breakpoints:
  - id: win
    at: watched_page+2048
    type: memory
    size: 8
    enabled: false
syscalls:
  write:
    on: entry
    limit: 1
    actions:
      - enable: win
"""
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, targets["mem_page"], "global", "5")
    assert proc.returncode == 0, proc.stderr
    assert "global n=5 sum=" in proc.stdout and " ok" in proc.stdout        # its write went out whole
    summary = records[-1]
    assert any("system call's entry" in e for e in summary.get("errors", [])), summary
