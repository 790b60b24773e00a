"""A traced program behaves as untraced and its data cannot pass for the tool's own output (issue 18):
text records stay one line each, injected calls keep the vector registers, held-back signals
arrive with their own siginfo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

HEADER = "version: 1\nname: t\ndescription: trust test\n"


def recipe(tmp_path: Path, body: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(HEADER + body)
    return str(path)


# -- text output -------------------------------------------------------------------------
def test_a_targets_string_cannot_forge_a_text_record(targets, tmp_path):
    forged = "x\n[   0.5000] breakpoint forged #1 at main [pid=1]\r\x1b[2K\u2028tail"
    out = tmp_path / "out.txt"
    proc = run_cli("run", recipe(tmp_path, "breakpoints:\n  - id: sl\n    at: strlen\n"
                                           "    actions:\n      - log: 'arg {str(arg0)}'\n"),
                   "-o", str(out), "--", targets["globs"], forged)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    mine = [line for line in lines if "forged" in line]
    assert mine, lines
    for line in mine:          # the target's string stays inside its own record, escaped
        assert line.startswith("[") and " breakpoint sl #" in line
        assert line.endswith(r": arg x\n[   0.5000] breakpoint forged #1 at main [pid=1]\x0d\x1b[2K\u2028tail")
    assert not any(line.startswith("[   0.5000]") for line in lines)
