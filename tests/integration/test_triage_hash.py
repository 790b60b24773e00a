"""The same bug hashes the same: ASLR on and off, PIE and non-PIE, the binary copied elsewhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

INPUTS = {"read": "null-read", "heap": "double-free", "child": "fork"}


def majors(report: dict) -> dict[str, str]:
    """input file name -> the major hash of its bucket."""
    return {Path(name).name: b["hash"]["major"] for b in report["buckets"] for name in b["inputs"]}


def crash_of(report: dict, input_name: str) -> dict:
    return next(b["crash"] for b in report["buckets"] if any(Path(n).name == input_name for n in b["inputs"]))


def triage(program: str, inputs: Path, *prefix: str) -> dict:
    proc = run_cli("triage", "--inputs", str(inputs), "--jobs", "1", "--quiet", "--", program, "@@") if not prefix \
        else _run_under(prefix, program, inputs)
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)


def _run_under(prefix: tuple[str, ...], program: str, inputs: Path):
    import subprocess
    import sys
    exe = Path(sys.executable).parent / "instrument"
    return subprocess.run([*prefix, str(exe), "triage", "--inputs", str(inputs), "--jobs", "1", "--quiet",
                           "--", program, "@@"], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hash-inputs")
    for name, text in INPUTS.items():
        (folder / name).write_text(text + "\n")
    return folder


def test_major_hash_is_stable_across_aslr_pie_and_copies(targets, inputs, tmp_path):
    if shutil.which("setarch") is None:
        pytest.fail("setarch (util-linux) is needed to turn ASLR off")
    # Same program name everywhere: the hash names modules by basename, as a rebuilt
    # binary of the same project would be named.
    pie = tmp_path / "pie" / "triage_input"
    nopie = tmp_path / "nopie" / "triage_input"
    copied = tmp_path / "elsewhere" / "deeper" / "triage_input"
    for src, dst in ((targets["triage_input"], pie), (targets["triage_input-nopie"], nopie),
                     (targets["triage_input"], copied)):
        dst.parent.mkdir(parents=True)
        shutil.copy2(src, dst)

    reference = triage(str(pie), inputs)
    no_aslr = triage(str(pie), inputs, "setarch", "x86_64", "-R")
    runs = {"pie, ASLR off": no_aslr, "non-PIE": triage(str(nopie), inputs),
            "copied": triage(str(copied), inputs), "original path": triage(targets["triage_input"], inputs)}

    assert set(majors(reference)) == set(INPUTS)
    for label, report in runs.items():
        assert majors(report) == majors(reference), label
    # The runs really differed: without ASLR the PIE loads at the kernel's fixed base,
    # and the non-PIE binary at its link address.
    assert crash_of(no_aslr, "read")["address"].startswith("0x5555555")
    assert int(crash_of(runs["non-PIE"], "read")["address"], 16) < 0x1000000
    assert crash_of(reference, "read")["address"] != crash_of(no_aslr, "read")["address"]
