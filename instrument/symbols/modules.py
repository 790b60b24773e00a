"""The runtime module map of one process (which image holds an address; names <-> runtime
addresses), and the static resolver the compiler uses before any process exists."""

from __future__ import annotations

import functools
import os
import re
import shutil
from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Union

from ..events import Module
from .elf import ElfImage, ImageError, open_image

if TYPE_CHECKING:
    # The PE reader (pe.py, pe_image.py: ~6 ms of imports) is loaded at the first MZ file.
    from .pe_image import PeImage

# What a module's file parses as: both answer symbol_address/symbolize/source_line/
# line_address/extent/build_id with link-time addresses (ELF) or RVAs (PE).
Image = Union[ElfImage, "PeImage"]

# `loop.c:42`: a source file (with an extension) and a line number; `loop.c:42#2` is the
# second of the line's locations (a line of an inlined function has one per function it
# was inlined into; the compiler arms each: compiler/line_plans.py).
_LINE_SPEC = re.compile(r"^(?P<file>[^:!\s]+\.\w+):(?P<line>\d+)(?:#(?P<index>\d+))?$")
# A bare name that can only be a library (`libc.so.6`, `kernel32.dll`), never a symbol.
_LIBRARY_NAME = re.compile(r"\.(so(\.\d+)*|dll|dylib)$", re.I)
_TEXT_CACHE_LIMIT = 4096


@functools.lru_cache(maxsize=1024)
def _magic(real: str, mtime_ns: int, size: int) -> bytes:
    with open(real, "rb") as f:
        return f.read(4)


def open_module_image(path: str) -> Image:
    """The parsed image of a module file, ELF or PE by its magic (`\\x7fELF` or `MZ`).

    The magic is cached per (realpath, mtime, size), as the images themselves are,
    so the thousands of modules a triage run reports cost one read each. Raises ImageError."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
        magic = _magic(real, st.st_mtime_ns, st.st_size)
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from e
    if magic.startswith(b"MZ"):
        from .pe_image import open_pe_image

        return open_pe_image(real)
    return open_image(real)     # ELF, or an ImageError saying it is not


class UnknownSymbol(KeyError):
    """A name that resolves to nothing; prints its message without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown symbol"


def _short_name(basename: str) -> str:
    """`libc.so.6` -> `libc`, `ld-linux-x86-64.so.2` -> `ld`: up to the first '.' or '-'."""
    return re.split(r"[.\-]", basename, maxsplit=1)[0]


def module_matches(module_name_in_expr: str, module: Module) -> bool:
    """Does `libc.so.6` / `libc` / `/lib/x86_64-linux-gnu/libc.so.6` name this module?"""
    wanted = module_name_in_expr.strip()
    if not wanted:
        return False
    path = module.path.replace("\\", "/")
    basename = module.name
    # PE names are case-insensitive (KERNEL32.DLL is kernel32.dll); ELF names are not.
    if "\\" in module.path or basename.lower().endswith((".dll", ".exe")):
        wanted, path, basename = wanted.lower(), path.lower(), basename.lower()
    if "/" in wanted or "\\" in wanted:
        wanted = wanted.replace("\\", "/")
        return os.path.normpath(wanted) == os.path.normpath(path) or (
            os.path.isabs(wanted) and os.path.realpath(wanted) == os.path.realpath(path))
    return wanted in (basename, _short_name(basename))


@dataclass(frozen=True)
class _Entry:
    module: Module
    image: Image | None         # None: the file could not be read; the module works by name
    start: int                  # runtime start: base + lowest PT_LOAD vaddr (PE: base + 0)
    end: int                    # runtime end (== start when the file is unreadable)

    def symbol(self, name: str, own_only: bool = False) -> int | None:
        if self.image is None:
            return None
        if own_only and isinstance(self.image, ElfImage):
            address = self.image.symbol_address(name, debug_file=False)
        else:
            address = self.image.symbol_address(name)
        return None if address is None else self.module.base + address


def _entry(module: Module) -> _Entry:
    try:
        image: Image | None = open_module_image(module.path)
    except ImageError:
        image = None
    if image is None or image.extent == (0, 0):
        return _Entry(module, image, module.base, module.base)
    lo, hi = image.extent
    return _Entry(module, image, module.base + lo, module.base + hi)


class ModuleMap:
    """The images loaded in one process, kept in load order; the first added is the main image."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        self._entries: list[_Entry] = []
        self._main: _Entry | None = None
        self._starts: list[int] = []
        self._by_start: list[_Entry] = []
        self._text_cache: dict[int, str] = {}
        self._named: dict[int, str] = {}      # addresses named at run time (indirect functions)
        for m in modules:
            self.add(m)

    # -- membership -----------------------------------------------------------
    def add(self, module: Module) -> None:
        entry = _entry(module)
        # The same base reported twice (attach, then a rendezvous walk) replaces, not duplicates.
        self._entries = [e for e in self._entries if e.module.base != module.base]
        if self._main is None and not self._entries:
            self._main = entry
        self._entries.append(entry)
        self._reindex()

    def extent(self, base: int) -> tuple[int, int] | None:
        """[start, end) of the module loaded at `base` (the span of its segments)."""
        entry = next((e for e in self._entries if e.module.base == base), None)
        return (entry.start, entry.end) if entry is not None else None

    def remove(self, base: int) -> Module | None:
        gone = next((e for e in self._entries if e.module.base == base), None)
        if gone is None:
            return None
        self._named = {a: n for a, n in self._named.items() if not gone.start <= a < gone.end}
        self._text_cache.clear()
        self._entries.remove(gone)
        if gone is self._main:
            self._main = None
        self._reindex()
        return gone.module

    def _reindex(self) -> None:
        by_start = sorted((e for e in self._entries if e.end > e.start), key=lambda e: e.start)
        self._by_start = by_start
        self._starts = [e.start for e in by_start]
        self._text_cache.clear()

    def __iter__(self) -> Iterator[Module]:
        return iter([e.module for e in self._entries])

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def main(self) -> Module | None:
        return self._main.module if self._main is not None else None

    def image_of(self, module: Module) -> Image | None:
        """The parsed file of a loaded module (for unwinding, disassembly), if readable."""
        entry = next((e for e in self._entries if e.module == module), None)
        return entry.image if entry is not None else None

    # -- address -> module -------------------------------------------------------
    def _entry_at(self, address: int) -> _Entry | None:
        i = bisect_right(self._starts, address) - 1
        if i >= 0 and address < self._by_start[i].end:
            return self._by_start[i]
        return None

    def in_main_image(self, address: int) -> bool:
        entry = self._entry_at(address)
        return entry is not None and entry is self._main

    def is_ifunc(self, address: int) -> bool:
        """Whether a runtime address is a GNU indirect function's resolver (ElfImage.is_ifunc)."""
        entry = self._entry_at(address)
        return bool(entry is not None and entry.image is not None
                    and entry.image.is_ifunc(address - entry.module.base))

    def find(self, address: int) -> Module | None:
        entry = self._entry_at(address)
        return entry.module if entry is not None else None

    # -- name -> address ----------------------------------------------------------
    def _search_order(self) -> list[_Entry]:
        # Like gdb: the main program first, then the libraries in load order.
        if self._main is None:
            return list(self._entries)
        return [self._main, *(e for e in self._entries if e is not self._main)]

    def try_resolve(self, name: str) -> int | None:
        """Runtime address of `sym`, `mod!sym`, `mod` (its start) or `file.c:line`; None if unknown."""
        name = name.strip()
        spec = _LINE_SPEC.match(name)
        if spec is not None:
            return self._resolve_line(spec.group("file"), int(spec.group("line")), _index(spec))
        module_part, bang, symbol = name.partition("!")
        owners = [e for e in self._search_order() if bang and module_matches(module_part, e.module)]
        if owners:
            return next((a for a in (e.symbol(symbol) for e in owners) if a is not None), None)
        # No module of that name: a C++ `operator!` is still a symbol name. The names the
        # modules themselves define, in search order; then the main program's debug file.
        # A library's static functions, which only its debug file knows, are named with
        # their module (`libc.so.6!_int_free`): ld.so's private strlen, mapped before libc,
        # must not catch a breakpoint on the strlen the program imports.
        for e in self._search_order():
            address = e.symbol(name, own_only=True)
            if address is not None:
                return address
        if self._main is not None:
            address = self._main.symbol(name)
            if address is not None:
                return address
        for e in self._search_order():
            if module_matches(name, e.module):
                return e.start
        return None

    def _resolve_line(self, file: str, line: int, index: int) -> int | None:
        for e in self._search_order():
            if e.image is not None:
                address = line_location(e.image, file, line, index)
                if address is not None:
                    return e.module.base + address
        return None

    def resolve(self, name: str) -> int:
        """Like try_resolve, but raises UnknownSymbol (a KeyError) saying what was searched."""
        address = self.try_resolve(name)
        if address is not None:
            return address
        loaded = ", ".join(e.module.name for e in self._search_order()) or "none"
        module_part, bang, symbol = name.strip().partition("!")
        if bang and module_part:
            if not any(module_matches(module_part, e.module) for e in self._entries):
                raise UnknownSymbol(f"{name!r}: no module {module_part!r} is loaded (loaded: {loaded})")
            raise UnknownSymbol(f"{name!r}: no symbol {symbol!r} in module {module_part!r}")
        if _LINE_SPEC.match(name.strip()):
            raise UnknownSymbol(f"{name!r}: no code at that source line (modules: {loaded})")
        raise UnknownSymbol(f"{name!r}: no symbol or module of that name (searched: {loaded})")

    # -- address -> name ------------------------------------------------------------
    def describe(self, address: int, *, lines: bool = True, return_address: bool = False) -> dict[str, Any]:
        """{"module", "offset", "symbol", "file", "line"} for a runtime address; the symbol
        carries no module prefix (the record has `module`). Unknown parts are None.
        "separate_debug": True when only the module's separate debug file names it.

        return_address=True describes a caller frame's pc: the symbol and line are
        those of the call (pc-1), since a noreturn call may be a function's last
        instruction and its return address the next function's first byte."""
        out: dict[str, Any] = {"module": None, "offset": None, "symbol": None, "file": None, "line": None}
        back = 1 if return_address else 0
        entry = self._entry_at(address - back)
        if entry is None:
            return out
        out["module"] = entry.module.name
        out["offset"] = address - entry.start
        if entry.image is not None:
            link = address - back - entry.module.base
            from_debug = getattr(entry.image, "symbolize_from", None)
            hit: tuple[Any, ...] | None = from_debug(link) if from_debug is not None else entry.image.symbolize(link)
            if hit is not None:
                out["symbol"] = _plus(hit[0], hit[1] + back)
                if len(hit) > 2 and hit[2]:
                    out["separate_debug"] = True
            where = entry.image.source_line(link) if lines else None
            if where is not None:
                out["file"], out["line"] = where
        return out

    def inlined_at(self, address: int, *, return_address: bool = False) -> tuple[Any, ...]:
        """The inlined calls (symbols.inlines.InlinedCall) around a runtime address,
        innermost first; return_address as for describe."""
        back = 1 if return_address else 0
        entry = self._entry_at(address - back)
        inlined = getattr(entry.image, "inlined_at", None) if entry is not None else None
        if entry is None or inlined is None:
            return ()
        return tuple(inlined(address - back - entry.module.base))

    def symbol_text(self, address: int) -> str:
        """`hit+0x4`, `libc.so.6!malloc+0x10`, `libc.so.6+0x1234`, or `0x7f..` outside every module."""
        text = self._text_cache.get(address)
        if text is None:
            text = self._symbol_text(address)
            # Breakpoint addresses repeat on every hit: keep the answers, within bounds.
            if len(self._text_cache) >= _TEXT_CACHE_LIMIT:
                self._text_cache.clear()
            self._text_cache[address] = text
        return text

    def name_indirect(self, implementation: int, resolver: int) -> None:
        """Name the implementation an indirect function's resolver picked after that
        function (`libc.so.6!strcpy`): its own symbol (__strcpy_avx2) is local, and a
        shipped libc has none."""
        entry = self._entry_at(resolver)
        hit = entry.image.symbolize(resolver - entry.module.base) if entry and entry.image else None
        if hit is not None and not hit[1]:
            self._named[implementation] = hit[0]
            self._text_cache.pop(implementation, None)

    def _symbol_text(self, address: int) -> str:
        entry = self._entry_at(address)
        if entry is None:
            return f"{address:#x}"
        hit = entry.image.symbolize(address - entry.module.base) if entry.image is not None else None
        if address in self._named:
            hit = (self._named[address], 0)
        if hit is None:
            return f"{entry.module.name}+{address - entry.start:#x}"
        text = _plus(hit[0], hit[1])
        return text if entry is self._main else f"{entry.module.name}!{text}"


def _index(spec: re.Match[str]) -> int:
    return int(spec.group("index")) if spec.group("index") else 0


def line_location(image: Image, file: str, line: int, index: int = 0) -> int | None:
    """Link-time address of `file:line` in an image: its lowest (index 0), or its
    index-th location (1-based: one per function with code for the line)."""
    if not index:
        return image.line_address(file, line)
    locations = getattr(image, "line_locations", None)
    found = locations(file, line) if locations is not None else None
    if found is None or not 0 < index <= len(found[1]):
        return None
    return int(found[1][index - 1])


def parse_line_spec(text: str) -> tuple[str, int] | None:
    """(file, line) of a `loop.c:42` text, or None."""
    spec = _LINE_SPEC.match(text.strip())
    if spec is None or spec.group("index"):
        return None
    return spec.group("file"), int(spec.group("line"))


def _plus(name: str, offset: int) -> str:
    return f"{name}+{offset:#x}" if offset else name


class StaticResolver:
    """Names in the program before it runs, for the compiler: link-time addresses (PIE
    bias not applied: the compiler only checks existence and shows the address)."""

    def __init__(self, program_path: str) -> None:
        path = program_path
        if "/" not in path and not os.path.exists(path):
            # `run: [ls]` is looked up on PATH, as execvp will.
            path = shutil.which(path) or path
        self.image = open_module_image(path)
        self.module = Module(program_path, 0)

    def module_of(self, name: str) -> str | None:
        """The module part of `mod!sym`; a bare library file name (`libc.so.6`) is its own module."""
        bare = name.strip()
        module_part, bang, _ = bare.partition("!")
        if bang and module_part and self.image.symbol_address(bare) is None:   # not `operator!`
            return module_part
        if _LIBRARY_NAME.search(bare) and self.image.symbol_address(bare) is None:
            return bare
        return None

    def line_locations(self, text: str) -> tuple[int, list[int]] | None:
        """For a `loop.c:42` text: (the line used, its link-time locations, one per function)."""
        spec = parse_line_spec(text)
        locations = getattr(self.image, "line_locations", None)
        if spec is None or locations is None:
            return None
        found = locations(*spec)
        return (int(found[0]), [int(a) for a in found[1]]) if found is not None else None

    def is_deferred(self, name: str) -> bool:
        """True for a name in another module: it is resolved at that module's LOAD_DLL."""
        module = self.module_of(name)
        return module is not None and not module_matches(module, self.module)

    def resolve(self, name: str) -> int | None:
        """Link-time address of a name in the program (`sym`, `prog!sym`, `prog`, `file.c:N`)."""
        name = name.strip()
        spec = _LINE_SPEC.match(name)
        if spec is not None:
            return line_location(self.image, spec.group("file"), int(spec.group("line")), _index(spec))
        module_part, bang, symbol = name.partition("!")
        if bang and module_part and module_matches(module_part, self.module):
            return self.image.symbol_address(symbol)
        address = self.image.symbol_address(name)
        if address is None and module_matches(name, self.module):
            return self.image.extent[0]
        return address
