"""The functions of one module image, as symbol patterns match them: one entry per address, with every
name it goes by (aliases, demangled C++ names), cached per image."""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..symbols.demangle import demangle_many, is_mangled, lookup_aliases, without_parameters


@dataclass(frozen=True)
class Alias:
    """One name of a function: `linkage` the symbol (`malloc`, `_ZN2ns1K1fEv`), `name` as
    records and ids show it (`malloc`, `ns::K::f`), `signature` the demangled name with its
    parameters (`ns::K::f(int)`; `name` for C), `forms` every spelling a pattern may match."""

    linkage: str
    name: str
    signature: str
    forms: tuple[str, ...]


@dataclass(frozen=True)
class Function:
    """One function of an image: its link-time address (RVA for PE) and its names, the
    plainest first (`malloc` before `__libc_malloc`)."""

    address: int
    aliases: tuple[Alias, ...]


@dataclass(frozen=True)
class Match:
    """A function a pattern matched, named by the plainest of its names that matched
    (`str*` matches strchr, not its alias index)."""

    name: str
    linkage: str
    address: int


def _alias_rank(name: str) -> tuple[int, int, str]:
    # The plainest spelling first (malloc, not __libc_malloc), as gdb shows.
    return (len(name) - len(name.lstrip("_")), len(name), name)


def _code_test(image: Any) -> Callable[[int], bool]:
    """Is a link-time address code? ELF images know their executable segments; a PE
    image's symbol table keeps only code addresses; anything else is trusted."""
    is_code = getattr(image, "is_code", None)
    if callable(is_code):
        return lambda address: bool(is_code(address))
    starts = getattr(image.symbols, "starts", None)
    if starts is not None:
        code = frozenset(starts)
        return lambda address: address in code
    return lambda address: True


@functools.lru_cache(maxsize=64)
def function_table(image: Any, with_debug_file: bool = False) -> tuple[Function, ...]:
    """Every function of `image` (an ElfImage or PeImage), one per address, in address order.

    Aliases (two names at one address: `__libc_malloc` and `malloc`) are one
    function. PLT stubs (`puts@plt`) are not the module's functions and are left
    out; data symbols too. with_debug_file: the names of its separate debug file too
    (for the main program, so a stripped one matches as it did unstripped; not for
    libraries, where libc6-dbg would add hundreds of internal names to `str*`)."""
    by_name: dict[str, int] = dict(image.symbols.by_name)
    debug = getattr(image, "debug_symbols", None) if with_debug_file else None
    if debug is not None:
        for name, address in debug.by_name.items():
            by_name.setdefault(name, address)
    is_code = _code_test(image)
    groups: dict[int, list[str]] = {}
    for name, address in by_name.items():
        if name.endswith("@plt") or not is_code(address):
            continue
        groups.setdefault(address, []).append(name)
    mangled = sorted({n for names in groups.values() for n in names if is_mangled(n)})
    demangled = dict(zip(mangled, demangle_many(mangled)))
    out = []
    for address in sorted(groups):
        aliases = []
        for n in sorted(groups[address], key=_alias_rank):
            full = demangled.get(n, n)
            short = without_parameters(full)
            aliases.append(Alias(n, short, full, tuple(dict.fromkeys((n, full, short, *lookup_aliases(full))))))
        out.append(Function(address, tuple(aliases)))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _matcher(glob: str) -> Callable[[str], Any]:
    return re.compile(fnmatch.translate(glob)).match


def matching(functions: tuple[Function, ...], glob: str) -> list[Match]:
    """The functions one of whose names matches the shell-style `glob` (case-sensitive),
    sorted by name. Overloads of one C++ name (`ns::K::f(int)`, `ns::K::f(double)`) keep
    their signature as their name, so each has its own."""
    match = _matcher(glob)
    found: list[tuple[Alias, int]] = []
    for f in functions:
        alias = next((a for a in f.aliases if any(match(form) for form in a.forms)), None)
        if alias is not None:
            found.append((alias, f.address))
    counts: dict[str, int] = {}
    for alias, _ in found:
        counts[alias.name] = counts.get(alias.name, 0) + 1
    out = [Match(a.name if counts[a.name] == 1 else a.signature, a.linkage, address) for a, address in found]
    return sorted(out, key=lambda m: (m.name, m.address))


def module_glob_matches(glob: str, path: str) -> bool:
    """Does a module-name glob (`libz.so*`, `*`, `/usr/lib/*/libssl*`) match the module at `path`?
    A glob with a `/` matches the whole path; otherwise the file name. PE names ignore case."""
    normal = path.replace("\\", "/")
    name = normal.rsplit("/", 1)[-1]
    subject = normal if "/" in glob else name
    if name.lower().endswith((".dll", ".exe")):
        return fnmatch.fnmatchcase(subject.lower(), glob.lower())
    return fnmatch.fnmatchcase(subject, glob)
