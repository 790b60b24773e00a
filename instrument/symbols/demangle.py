"""C++ (Itanium ABI) demangling through binutils' c++filt, batched: one process per image."""

from __future__ import annotations

import shutil
import subprocess

# c++filt echoes lines it cannot demangle unchanged, so the mapping is total.
_TIMEOUT = 30.0


def is_mangled(name: str) -> bool:
    """Itanium-mangled linkage names start with _Z (rarely with the __Z of Mach-O)."""
    return name.startswith("_Z")


def demangle_many(names: list[str]) -> list[str]:
    """The demangled form of each name, in order; names that are not mangled come back
    unchanged, and so does everything when c++filt is not installed (documented
    behaviour: symbols then show in their linkage form)."""
    todo = [n for n in names if is_mangled(n) and "\n" not in n]
    if not todo:
        return list(names)
    exe = shutil.which("c++filt")
    if exe is None:
        return list(names)
    try:
        # One process for the whole batch: libstdc++ alone has thousands of names,
        # and a process per name would cost seconds.
        out = subprocess.run([exe], input="\n".join(todo) + "\n", capture_output=True,
                             text=True, timeout=_TIMEOUT, check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return list(names)
    if len(out) < len(todo):
        return list(names)
    table = dict(zip(todo, out))
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
