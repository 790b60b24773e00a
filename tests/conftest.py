"""Shared fixtures: C targets built once per session with gcc, and a CLI runner.

Each tests/targets/NAME.c builds to build/NAME with the flags of its
`//! cflags:` line (default `-g -O0`). A `//! variant SUFFIX: FLAGS` line builds
another binary, build/NAME-SUFFIX, from the same source with those flags. A
`//! cc: COMPILER` line builds with another compiler (clang for MemorySanitizer);
where that compiler is missing the target is left out, and tests of it skip; under
CI (INSTRUMENT_CI=1, set by .ci/run) it is installed from Debian's packages first
(clang: 11 packages, 14 MB; 14 s here with apt-get update), so those tests run there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TARGETS = Path(__file__).parent / "targets"
BUILD = TARGETS / "build"
_DIRECTIVE = re.compile(r"^//!\s*(cflags|variant\s+([\w-]+))\s*:(.*)$", re.M)
_COMPILER = re.compile(r"^//!\s*cc\s*:\s*(\S+)\s*$", re.M)
# `//! cc:` compilers CI installs where missing: compiler -> its Debian package.
_CI_PACKAGES = {"clang": "clang"}


class Targets:
    """Paths of built test programs: targets["loop"], targets["crash-pie"]."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self._paths = paths

    def __getitem__(self, name: str) -> str:
        return str(self._paths[name])

    def __contains__(self, name: str) -> bool:
        return name in self._paths


def _compiler_present(compiler: str) -> bool:
    """Whether `compiler` runs here; under CI, a missing one with a Debian package is
    installed first (apt-get update once, then apt-get install -y)."""
    if shutil.which(compiler) is not None:
        return True
    package = _CI_PACKAGES.get(compiler)
    if os.environ.get("INSTRUMENT_CI") != "1" or package is None or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run([*sudo, *cmd], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            pytest.fail(f"INSTRUMENT_CI=1: installing {package} for the `//! cc: {compiler}` targets "
                        f"failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    return shutil.which(compiler) is not None


def _build_one(source: Path, out: Path, flags: list[str], compiler: str = "gcc") -> None:
    if out.exists() and out.stat().st_mtime >= source.stat().st_mtime:
        return
    cmd = [compiler, *flags, "-o", str(out), str(source)]
    if "-shared" not in flags:
        cmd += ["-ldl", "-lpthread"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def targets() -> Targets:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the test targets")
    BUILD.mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    for source in sorted(TARGETS.glob("*.c")):
        text = source.read_text()
        cc = _COMPILER.search(text)
        compiler = cc.group(1) if cc else "gcc"
        if not _compiler_present(compiler):
            continue
        base_flags = ["-g", "-O0"]
        variants: list[tuple[str, list[str]]] = []
        for m in _DIRECTIVE.finditer(text):
            flags = m.group(3).split()
            if m.group(2):
                variants.append((f"{source.stem}-{m.group(2)}", flags))
            else:
                base_flags = flags
        variants.insert(0, (source.stem, base_flags))
        for name, flags in variants:
            out = BUILD / (name + (".so" if "-shared" in flags else ""))
            try:
                _build_one(source, out, flags, compiler)
            except subprocess.CalledProcessError as e:
                pytest.fail(f"building {source.name} as {name} failed:\n{e.stderr}")
            paths[name] = out
    return Targets(paths)


def run_cli(*args: str, input: str | None = None, timeout: float = 60, cwd: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `instrument` CLI as a user would, in a subprocess."""
    exe = Path(sys.executable).parent / "instrument"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "instrument"]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([*cmd, *args], input=input, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=full_env)


@pytest.fixture
def cli():
    return run_cli


def run_recipe_jsonl(tmp_path: Path, text: str, *command: str, extra: tuple[str, ...] = (),
                     timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """Write `text` as a recipe, `instrument run` it on `command` with jsonl output;
    return the process and its records (parsed)."""
    import json

    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    out = tmp_path / "out.jsonl"
    proc = run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), *extra, "--", *command,
                   timeout=timeout)
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return proc, records

