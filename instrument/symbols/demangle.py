"""Demangling: C++ (Itanium ABI) through binutils' c++filt, batched (one process per image);
Rust (legacy and v0) by our own demangler (rust_demangle.py), in gdb's form."""

from __future__ import annotations

import shutil
import subprocess

from .rust_demangle import demangle_rust

# c++filt echoes lines it cannot demangle unchanged, so the mapping is total.
_TIMEOUT = 30.0


def is_mangled(name: str) -> bool:
    """Itanium-mangled linkage names (and Rust's legacy ones) start with _Z (rarely with
    the __Z of Mach-O); Rust v0 names with _R followed by a path tag (C, N, M, X, Y, I, B)."""
    return name.startswith("_Z") or (len(name) > 2 and name.startswith("_R") and name[2] in "CNMXYIB0123456789")


def demangle_many(names: list[str]) -> list[str]:
    """The demangled form of each name, in order; names that are not mangled come back
    unchanged, and so does everything when c++filt is not installed (documented
    behaviour: symbols then show in their linkage form)."""
    rust = {n: d for n in names if is_mangled(n) for d in (demangle_rust(n),) if d is not None}
    todo = [n for n in names if n.startswith("_Z") and n not in rust and "\n" not in n]
    if not todo:
        return [rust.get(n, n) for n in names]
    exe = shutil.which("c++filt")
    if exe is None:
        return [rust.get(n, n) for n in names]
    try:
        # One process for the whole batch: libstdc++ alone has thousands of names,
        # and a process per name would cost seconds.
        out = subprocess.run([exe], input="\n".join(todo) + "\n", capture_output=True,
                             text=True, timeout=_TIMEOUT, check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return [rust.get(n, n) for n in names]
    if len(out) < len(todo):
        return [rust.get(n, n) for n in names]
    table = {**dict(zip(todo, out)), **rust}
    return [table.get(n, n) for n in names]


def without_parameters(demangled: str) -> str:
    """`ns::f(int) const` -> `ns::f`, so a recipe may say `at: ns::f` as in gdb.

    Strips the outermost trailing parameter list only; `operator()` keeps its name."""
    if not demangled.endswith(")") and not demangled.endswith(" const"):
        return demangled
    depth = 0
    end = demangled.rfind(")")
    for i in range(end, -1, -1):
        c = demangled[i]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
            if depth == 0:
                head = demangled[:i]
                # `operator()(int)`: the first "()" belongs to the name.
                return head if head and not head.endswith("operator") else demangled
    return demangled


def lookup_aliases(demangled: str) -> list[str]:
    """Other spellings a recipe may use for a demangled name, as in gdb: `ns::f` for
    `ns::f(int) const`, `krate::Square::area` for Rust's `<krate::Square>::area`."""
    out = []
    bare = without_parameters(demangled)
    if bare != demangled:
        out.append(bare)
    if bare.startswith("<") and " as " not in bare:
        depth = 0
        for i, c in enumerate(bare):
            depth += (c == "<") - (c == ">")
            if depth == 0:
                if bare.startswith(">::", i):
                    out.append(bare[1:i] + bare[i + 1:])
                break
    return out
