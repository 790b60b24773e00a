"""Rust frames and names demangled (symbols/rust_demangle.py), both manglings, on a program
built with rustc: names as gdb and rustc-demangle print them, `at:` by demangled name."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from instrument.symbols.demangle import demangle_many
from instrument.symbols.elf import open_image
from tests.conftest import run_cli

SOURCE = Path(__file__).parents[1] / "targets" / "rust" / "shapes.rs"
RECIPE = "version: 1\nname: frames\ndescription: crash frames\ncrash:\n  - backtrace: {depth: 16}\n"

pytestmark = pytest.mark.skipif(shutil.which("rustc") is None, reason="rustc is not installed")

# v0 keeps the impl's shape (`<krate::T>::m`, as rustc-demangle prints it); legacy has no
# such information left (`krate::T::m`).
EXPECTED = {
    "v0": ["shapes::shapes::crash", "<shapes::shapes::Square>::area", "shapes::main::{closure#1}", "shapes::main"],
    "legacy": ["shapes::shapes::crash", "shapes::shapes::Square::area", "shapes::main::{{closure}}", "shapes::main"],
}


@pytest.fixture(scope="module", params=["v0", "legacy"])
def program(request, tmp_path_factory) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("rust") / f"shapes-{request.param}"
    # Legacy is stable rustc's default (asking for it by name needs -Z unstable-options).
    flags = ["-C", "symbol-mangling-version=v0"] if request.param == "v0" else []
    subprocess.run(["rustc", "-g", *flags, "-o", str(out), str(SOURCE)], check=True, capture_output=True, text=True)
    return request.param, str(out)


def _line(text: str) -> int:
    return next(i for i, line in enumerate(SOURCE.read_text().splitlines(), 1) if text in line)


def test_crash_frames_are_demangled_with_lines(program, tmp_path) -> None:
    mangling, path = program
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out.jsonl"
    proc = run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), "--", path, "7")
    (crash,) = [r for r in map(json.loads, out.read_text().splitlines()) if r["event"] == "crash"]
    assert proc.returncode == 1
    frames = [f for f in crash["frames"] if (f.get("symbol") or "").lstrip("<").startswith("shapes::")]
    names = [f["symbol"].split("+")[0] for f in frames]
    assert names == EXPECTED[mangling]
    lines = [(Path(f["file"]).name, f["line"]) for f in frames]
    assert lines == [("shapes.rs", _line("write_volatile(1)")), ("shapes.rs", _line("crash()")),
                     ("shapes.rs", _line("shapes::Square(k).area()")), ("shapes.rs", _line("println!"))]
    # The pc is in core's write_volatile, inlined twice over into crash(): as in gdb, a
    # frame for each inlined call, at the line its code is on, before crash() itself.
    top = crash["frames"][:3]
    assert [f.get("inlined", False) for f in top] == [True, True, False]
    assert "write_volatile" in top[0]["symbol"] and top[0]["file"].endswith("ptr/mod.rs")
    assert len({f["pc"] for f in top}) == 1
    if shutil.which("gdb"):
        gdb = subprocess.run(["gdb", "-nx", "-batch", "-ex", "run", "-ex", "bt", "--args", path, "7"],
                             capture_output=True, text=True).stdout
        oracle = [(Path(m.group(1)).name, int(m.group(2)))
                  for m in re.finditer(r"^#\d+ .* at (\S+):(\d+)$", gdb, re.M)][:6]
        ours = [(Path(f["file"]).name, f["line"]) for f in crash["frames"] if f.get("file")][:6]
        assert ours == oracle
    # No mangled name and no hash anywhere in the backtrace.
    assert not any(re.search(r"^_[RZ]|::h[0-9a-f]{16}|\[[0-9a-f]+\]", f.get("symbol") or "") for f in crash["frames"])


def test_names_resolve_in_at_by_their_demangled_form(program) -> None:
    mangling, path = program
    image = open_image(path)
    area = image.symbol_address("shapes::shapes::Square::area")     # gdb's spelling, both manglings
    assert area is not None and image.symbolize(area)[0] == EXPECTED[mangling][1]
    assert image.symbol_address("shapes::main") is not None


def test_every_rust_symbol_demangles_as_cxxfilt_does_minus_hashes(program) -> None:
    """c++filt (binutils) demangles both manglings, verbosely: with legacy hashes, crate
    disambiguators and const types. Without those, it must agree with ours on every name."""
    if shutil.which("c++filt") is None:
        pytest.skip("c++filt is not installed")
    _, path = program
    names = sorted({line.split()[-1] for line in subprocess.run(["nm", path], capture_output=True, text=True,
                                                                  check=True).stdout.splitlines()
                    if re.match(r"^(_R|_ZN.*17h[0-9a-f]{16}E)", line.split()[-1])})
    assert len(names) > 100
    reference = subprocess.run(["c++filt"], input="\n".join(names) + "\n", capture_output=True, text=True,
                               check=True).stdout.split("\n")
    ours = demangle_many(names)
    for name, ref, got in zip(names, reference, ours):
        ref = re.sub(r"\[[0-9a-f]+\]", "", ref)
        ref = re.sub(r"::h[0-9a-f]{16}$", "", ref)
        ref = re.sub(r"(\d|true|false|'.'): (usize|isize|bool|char|[ui](8|16|32|64|128))\b", r"\1", ref)
        assert got == ref, name
