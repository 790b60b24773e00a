"""The README's recipe and commands, run as written (HOUSE rule 10: examples are tests)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.conftest import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_recipe() -> str:
    section = README.read_text().split("## A recipe", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_the_readme_recipe_validates_explains_and_runs(targets, tmp_path):
    (tmp_path / "trace-hits.yaml").write_text(readme_recipe())
    shutil.copy(targets["loop"], tmp_path / "loop")
    assert run_cli("validate", "trace-hits.yaml", cwd=str(tmp_path)).returncode == 0
    explained = run_cli("explain", "trace-hits.yaml", cwd=str(tmp_path))
    assert "event 6 LOAD_DLL_DEBUG_EVENT" in explained.stdout and "on-hit: soft at hit" in explained.stdout
    proc = run_cli("run", "trace-hits.yaml", "--set", "n=10", "--format", "jsonl", "-o", "out.jsonl",
                   cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    hits = [r for r in records if r["event"] == "breakpoint"]
    assert [r["message"].splitlines()[0] for r in hits] == [f"hit {i + 1}: arg0={2 * i:#x}" for i in range(5)]
    assert set(hits[0]["registers"]) == {"rip", "rdi"}
    returns = [r["message"] for r in records if r["event"] == "return"]
    assert returns == [f"returned {4 * i:#x}" for i in range(5)]
    assert any(r["event"] == "load_dll" and "libc.so.6" in r["message"] for r in records)
    assert "sum=90 counter=45" in proc.stdout


def _sh_commands(heading: str) -> list[list[str]]:
    """The `instrument ...` commands of the ```sh blocks under `heading`, split as a shell would."""
    import shlex

    section = README.read_text().split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            line = line.split("&& ")[-1].strip()
            if line.startswith("instrument "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_the_first_commands_run_as_written(tmp_path):
    commands = _sh_commands("## Two commands")
    assert [c[0] for c in commands] == ["run", "trace"], commands
    for args in commands:
        proc = run_cli(*args, cwd=str(tmp_path))
        assert proc.returncode == 0 and proc.stdout, (args, proc.stderr)
    traced = run_cli(*commands[1][:-3], "--format", "jsonl", "--", "/bin/ls", "/", cwd=str(tmp_path))
    records = [json.loads(line) for line in traced.stdout.splitlines() if line.startswith("{")]
    hits = [r for r in records if r["event"] == "breakpoint"]
    returns = [r for r in records if r["event"] == "return"]
    assert hits and all(r["symbol"].startswith("libc.so.6!open") for r in hits), hits
    assert len(returns) == len(hits)


def test_the_trace_section_runs_as_written(tmp_path):
    commands = _sh_commands("### Trace in one line")
    assert [c[0] for c in commands] == ["trace", "trace", "run"], commands
    outputs = []
    for args in commands:
        proc = run_cli(*args, "--format", "jsonl", cwd=str(tmp_path)) if args[0] == "run" else \
            run_cli(*args[:args.index("--")], "--format", "jsonl", *args[args.index("--"):], cwd=str(tmp_path))
        assert proc.returncode == 0, (args, proc.stderr)
        outputs.append([json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")])
    strings = [r for r in outputs[0] if r["event"] == "breakpoint"]
    assert len({r["id"] for r in strings}) >= 2 and all(r["id"].startswith("libc.so.6!str") for r in strings)
    assert (tmp_path / "mallocs.yaml").exists()

    def hits(records):
        return [(r["id"], r.get("message"), r.get("registers")) for r in records if r["event"] in ("breakpoint", "return")]
    assert hits(outputs[1]) == hits(outputs[2]) and len(hits(outputs[1])) == 6
