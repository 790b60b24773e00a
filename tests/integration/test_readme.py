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
