"""CPU pinning never changes how a program's threads are scheduled, and the summary says when a run was pinned (issue 18)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_cli

RECIPE = "version: 1\nevents:\n  exit_process:\n    - log: bye\n"
CPUS = len(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(CPUS < 2, reason="one CPU: pinning changes nothing to see")


def _run(tmp_path, argv: list[str], *flags: str) -> tuple[dict[str, str], dict]:
    (tmp_path / "r.yaml").write_text(RECIPE)
    proc = run_cli("run", "r.yaml", "--format", "jsonl", "-o", "out.jsonl", *flags, "--", *argv, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()][-1]
    assert summary["event"] == "summary"
    seen = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return seen, summary


@needs_two
def test_a_single_threaded_target_runs_pinned_and_the_summary_says_so(tmp_path):
    _, summary = _run(tmp_path, ["true"])
    assert summary["pinned"] is True
    _, summary = _run(tmp_path, ["true"], "--no-pin")
    assert summary["pinned"] is False


@needs_two
def test_a_second_thread_gives_the_target_every_cpu_back(targets, tmp_path):
    seen, summary = _run(tmp_path, [targets["affinity"]])
    # Pinned while alone; an untraced fork child and both threads get every CPU, as untraced.
    assert seen == {"alone": "1", "child": str(CPUS), "thread": str(CPUS), "main": str(CPUS)}, seen
    assert summary["pinned"] is False          # not pinned throughout: it had threads
    seen, _ = _run(tmp_path, [targets["affinity"]], "--no-pin")
    assert seen == {"alone": str(CPUS), "child": str(CPUS), "thread": str(CPUS), "main": str(CPUS)}, seen


def test_the_text_summary_says_pinned(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    proc = run_cli("run", "r.yaml", "--", "true", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert "pinned to one CPU" in last, last
    proc = run_cli("run", "r.yaml", "--no-pin", "--", "true", cwd=str(tmp_path))
    assert "pinned" not in proc.stdout.splitlines()[-1]
