"""The debugging information of one module file, read lazily, one compilation unit at a time.

`dwarf_for(path)` opens a module's DWARF (today the file's own sections; a
separate debug file can be looked up there) and answers, by link-time pc: the
function and lexical scopes around it and the variables they declare; by
name: globals and statics, types; and the call sites that DW_OP_entry_value
needs. Nothing is parsed until asked, and then only the CU that holds the
answer (globals and types by name do read every CU once, on first use).
"""

from __future__ import annotations

import mmap
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Iterator

from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.ranges import BaseAddressEntry as RangeBaseEntry
from elftools.dwarf.locationlists import BaseAddressEntry, LocationEntry, LocationParser
from elftools.elf.elffile import ELFFile

from ..errors import TargetError
from .dwarf_loc import parse_ops
from .dwarf_types import CType, TypeBuilder, c_base_type, pointer_to, split_pointer
from .filecache import FileCache

_SCOPES = ("DW_TAG_lexical_block", "DW_TAG_inlined_subroutine")
_CONTAINERS = ("DW_TAG_namespace", "DW_TAG_class_type", "DW_TAG_structure_type", "DW_TAG_module")
_NAMED_TYPES = ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type", "DW_TAG_typedef",
                "DW_TAG_base_type", "DW_TAG_class_type")
_TYPE_PREFIX = {"DW_TAG_structure_type": "struct ", "DW_TAG_class_type": "struct ", "DW_TAG_union_type": "union ",
                "DW_TAG_enumeration_type": "enum "}

# A location: one expression for the whole scope, or (start, end, ops) ranges by link-time pc.
Ops = list[Any]
Location = Any      # Ops | list[tuple[int, int, Ops]] | bytes (DW_AT_const_value) | None (optimized out)


@dataclass(frozen=True)
class Variable:
    """A variable or parameter as DWARF declares it."""

    name: str
    type: CType
    is_param: bool
    location: Location
    is_list: bool                # location is a list of (start, end, ops)
    static: bool = False         # in memory at a fixed address (DW_OP_addr): globals, statics


@dataclass(frozen=True)
class Scope:
    """What is visible at one pc: the function, its frame base, the variables innermost first."""

    function: str
    low_pc: int                  # the function's entry
    frame_base: Location
    frame_base_is_list: bool
    variables: tuple[Variable, ...]
    params: tuple[Variable, ...]  # the function's own parameters, in order


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _attr(die: Any, name: str) -> Any:
    """An attribute of the DIE or of the DIE it completes (abstract origin, specification)."""
    seen = 0
    while die is not None and seen < 8:
        if name in die.attributes:
            return die.attributes[name]
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return None
        seen += 1
    return None


def _origin_type_die(die: Any) -> Any:
    seen = 0
    while "DW_AT_type" not in die.attributes and seen < 8:
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return die
        seen += 1
    return die


def _name(die: Any) -> str:
    attr = _attr(die, "DW_AT_name")
    return _text(attr.value) if attr is not None else ""


class ModuleDwarf:
    """The DWARF of one ELF file; see the module docstring."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            # A mapping, not a read: pyelftools seeks where it needs, the OS pages it in.
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        elf = ELFFile(self._map)        # type: ignore[arg-type]   # an mmap reads and seeks like a file
        if not elf.has_dwarf_info():
            raise TargetError(f"{path}: no DWARF")
        self.dwarf = elf.get_dwarf_info()
        if not self.dwarf.has_debug_info:
            raise TargetError(f"{path}: no .debug_info")
        self.path = path
        self.types = TypeBuilder()
        self._locations = LocationParser(self.dwarf.location_lists())
        self._parsers: dict[tuple[int, int], DWARFExprParser] = {}
        self._cu_index: tuple[list[int], list[tuple[int, int]]] | None = None
        self._functions: dict[int, tuple[list[int], list[tuple[int, int, Any]]]] = {}
        self._scopes: dict[int, Scope | None] = {}
        self._globals: dict[str, Variable] | None = None
        self._named_types: dict[str, Any] | None = None
        self._variable_names: frozenset[str] | None = None
        self._call_sites: dict[int, dict[int, Any]] = {}

    # -- compilation units by address ------------------------------------------------
    def _cus(self) -> tuple[list[int], list[tuple[int, int]]]:
        if self._cu_index is None:
            spans: list[tuple[int, int, int]] = []
            aranges = self.dwarf.get_aranges()
            if aranges is not None and aranges.entries:
                spans = [(e.begin_addr, e.begin_addr + e.length, e.info_offset) for e in aranges.entries if e.length]
            else:
                for cu in self.dwarf.iter_CUs():
                    spans += [(lo, hi, cu.cu_offset) for lo, hi in self._ranges(cu.get_top_DIE(), cu)]
            spans.sort()
            self._cu_index = ([s[0] for s in spans], [(s[1], s[2]) for s in spans])
        return self._cu_index

    def cu_at(self, pc: int) -> Any:
        starts, rest = self._cus()
        i = bisect_right(starts, pc) - 1
        # CU ranges do not overlap, but one CU's range may hold a gap another fills
        # (a .text.unlikely part): look a few ranges back, not just one.
        for j in range(i, max(i - 8, -1), -1):
            end, offset = rest[j]
            if pc < end:
                return self.dwarf.get_CU_at(offset)
        return None

    def _ranges(self, die: Any, cu: Any) -> list[tuple[int, int]]:
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            lo = attrs["DW_AT_low_pc"].value
            high = attrs["DW_AT_high_pc"]
            hi = high.value if high.form == "DW_FORM_addr" else lo + high.value
            return [(lo, hi)]
        if "DW_AT_ranges" in attrs:
            attr = attrs["DW_AT_ranges"]
            lists = self.dwarf.range_lists()
            if lists is None:
                return []
            if attr.form == "DW_FORM_rnglistx":
                return []        # split DWARF's indexed range lists: gcc emits them only with -gsplit-dwarf
            entries = lists.get_range_list_at_offset(attr.value, cu=cu)
            top = cu.get_top_DIE().attributes
            base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
            out = []
            for e in entries:
                if isinstance(e, RangeBaseEntry):
                    base = e.base_address
                elif e.is_absolute:
                    out.append((e.begin_offset, e.end_offset))
                else:
                    out.append((base + e.begin_offset, base + e.end_offset))
            return out
        return []

    def _cu_base(self, cu: Any) -> int:
        top = cu.get_top_DIE().attributes
        return int(top["DW_AT_low_pc"].value) if "DW_AT_low_pc" in top else 0

    # -- functions and scopes -----------------------------------------------------------
    def _function_index(self, cu: Any) -> tuple[list[int], list[tuple[int, int, Any]]]:
        index = self._functions.get(cu.cu_offset)
        if index is None:
            spans: list[tuple[int, int, Any]] = []

            def visit(parent: Any) -> None:
                for die in parent.iter_children():
                    if die.tag == "DW_TAG_subprogram":
                        spans.extend((lo, hi, die) for lo, hi in self._ranges(die, cu))
                    elif die.tag in _CONTAINERS:
                        visit(die)
            visit(cu.get_top_DIE())
            spans.sort(key=lambda s: (s[0], s[1]))
            index = self._functions[cu.cu_offset] = ([s[0] for s in spans], spans)
        return index

    def function_die(self, pc: int) -> tuple[Any, Any] | None:
        """(CU, subprogram DIE) of the function holding link-time `pc`."""
        cu = self.cu_at(pc)
        if cu is None:
            return None
        starts, spans = self._function_index(cu)
        i = bisect_right(starts, pc) - 1
        while i >= 0:
            lo, hi, die = spans[i]
            if lo <= pc < hi:
                return cu, die
            i -= 1
        return None

    def scope_at(self, pc: int) -> Scope | None:
        """The variables visible at link-time `pc`, or None where no function's DWARF covers it."""
        if pc in self._scopes:
            return self._scopes[pc]
        found = self.function_die(pc)
        scope = None if found is None else self._build_scope(pc, *found)
        if len(self._scopes) > 4096:
            self._scopes.clear()
        self._scopes[pc] = scope
        return scope

    def _build_scope(self, pc: int, cu: Any, function: Any) -> Scope:
        chain = [function]
        while True:
            inner = next((c for c in chain[-1].iter_children() if c.tag in _SCOPES
                          and any(lo <= pc < hi for lo, hi in self._ranges(c, cu))), None)
            if inner is None:
                break
            chain.append(inner)
        variables: list[Variable] = []
        for die in reversed(chain):
            for child in die.iter_children():
                if child.tag in ("DW_TAG_formal_parameter", "DW_TAG_variable"):
                    var = self._variable(child, cu)
                    if var is not None:
                        variables.append(var)
        params = tuple(v for v in (self._variable(c, cu) for c in function.iter_children()
                                   if c.tag == "DW_TAG_formal_parameter") if v is not None)
        base_attr = function.attributes.get("DW_AT_frame_base")
        base, base_list = self._location(base_attr, cu, function) if base_attr is not None else (None, False)
        lo = self._ranges(function, cu)
        return Scope(_name(function), min(r[0] for r in lo) if lo else pc, base, base_list,
                     tuple(variables), params)

    def _variable(self, die: Any, cu: Any) -> Variable | None:
        name = _name(die)
        if not name:
            return None
        ctype = self.types.of(_origin_type_die(die))
        is_param = die.tag == "DW_TAG_formal_parameter"
        attr = die.attributes.get("DW_AT_location")
        if attr is None and "DW_AT_const_value" in die.attributes:
            value = die.attributes["DW_AT_const_value"].value
            data = bytes(value) if isinstance(value, list) else (int(value) & ((1 << 64) - 1)).to_bytes(8, "little")
            return Variable(name, ctype, is_param, data, False)
        if attr is None:
            if "DW_AT_declaration" in die.attributes:
                return None      # `extern int x;` inside a function: the global answers
            return Variable(name, ctype, is_param, None, False)
        location, is_list = self._location(attr, cu, die)
        static = (not is_list and bool(location) and location[0].op_name == "DW_OP_addr" and len(location) == 1)
        return Variable(name, ctype, is_param, location, is_list, static)

    def _parser(self, cu: Any) -> DWARFExprParser:
        key = (cu.structs.dwarf_format, cu.structs.address_size)
        parser = self._parsers.get(key)
        if parser is None:
            parser = self._parsers[key] = DWARFExprParser(cu.structs)
        return parser

    def _location(self, attr: Any, cu: Any, die: Any) -> tuple[Location, bool]:
        parsed = self._locations.parse_from_attribute(attr, cu.header.version, die)
        parser = self._parser(cu)
        if not isinstance(parsed, list):
            return parse_ops(parser, parsed.loc_expr), False
        base = self._cu_base(cu)
        out: list[tuple[int, int, Ops]] = []
        for entry in parsed:
            if isinstance(entry, BaseAddressEntry):
                base = entry.base_address
            elif isinstance(entry, LocationEntry):
                lo, hi = entry.begin_offset, entry.end_offset
                if not entry.is_absolute:
                    lo, hi = base + lo, base + hi
                out.append((lo, hi, parse_ops(parser, entry.loc_expr)))
        return out, True

    # -- by name ----------------------------------------------------------------------------
    def _iter_top(self) -> Iterator[tuple[Any, Any]]:
        for cu in self.dwarf.iter_CUs():
            stack = [cu.get_top_DIE()]
            while stack:
                for die in stack.pop().iter_children():
                    yield cu, die
                    if die.tag in ("DW_TAG_namespace",):
                        stack.append(die)

    def global_named(self, name: str) -> Variable | None:
        """A global or file-static variable by name (the first CU that defines it)."""
        if self._globals is None:
            found: dict[str, Variable] = {}
            for cu, die in self._iter_top():
                if die.tag == "DW_TAG_variable" and "DW_AT_location" in die.attributes:
                    var = self._variable(die, cu)
                    if var is not None and var.static:
                        found.setdefault(var.name, var)
            self._globals = found
        return self._globals.get(name)

    def knows_variable(self, name: str) -> bool:
        """Does any function or CU declare a variable or parameter of that name?"""
        if self._variable_names is None:
            names: set[str] = set()
            for cu in self.dwarf.iter_CUs():
                for die in cu.iter_DIEs():
                    if die.tag in ("DW_TAG_variable", "DW_TAG_formal_parameter") and "DW_AT_name" in die.attributes:
                        names.add(_text(die.attributes["DW_AT_name"].value))
            self._variable_names = frozenset(names)
        return name in self._variable_names

    def type_named(self, text: str) -> CType | None:
        """A type by its C spelling: `struct req *`, `req_t`, `enum color`, `unsigned long`."""
        base, depth = split_pointer(text)
        ctype = self._named_type(base) or c_base_type(base)
        if ctype is None:
            return None
        for _ in range(depth):
            ctype = pointer_to(None if ctype.kind == "void" else ctype)
        return ctype

    def _named_type(self, spelling: str) -> CType | None:
        if self._named_types is None:
            named: dict[str, Any] = {}
            for _cu, die in self._iter_top():
                if die.tag in _NAMED_TYPES and "DW_AT_name" in die.attributes:
                    key = _TYPE_PREFIX.get(die.tag, "") + _text(die.attributes["DW_AT_name"].value)
                    # A complete definition beats a declaration (`struct FILE;`).
                    if key not in named or "DW_AT_declaration" in named[key].attributes:
                        named[key] = die
            self._named_types = named
        die = self._named_types.get(" ".join(spelling.split()))
        return self.types.build(die) if die is not None else None

    # -- call sites (DW_OP_entry_value) ------------------------------------------------------
    def call_site_values(self, return_pc: int) -> tuple[Any, dict[int, Ops]] | None:
        """(CU, {DWARF register: the caller's DW_AT_call_value ops}) of the call returning to `return_pc`."""
        found = self.function_die(return_pc - 1)
        if found is None:
            return None
        cu, function = found
        sites = self._call_sites.get(function.offset)
        if sites is None:
            sites = self._call_sites[function.offset] = {}
            stack = [function]
            while stack:
                for die in stack.pop().iter_children():
                    if die.tag in ("DW_TAG_call_site", "DW_TAG_GNU_call_site"):
                        ret = die.attributes.get("DW_AT_call_return_pc") or die.attributes.get("DW_AT_low_pc")
                        if ret is not None:
                            sites[int(ret.value)] = die
                    elif die.tag in _SCOPES:
                        stack.append(die)
        site = sites.get(return_pc)
        if site is None:
            return None
        parser = self._parser(cu)
        values: dict[int, Ops] = {}
        for param in site.iter_children():
            if param.tag not in ("DW_TAG_call_site_parameter", "DW_TAG_GNU_call_site_parameter"):
                continue
            loc = param.attributes.get("DW_AT_location")
            value = param.attributes.get("DW_AT_call_value") or param.attributes.get("DW_AT_GNU_call_site_value")
            if loc is None or value is None:
                continue
            where = parse_ops(parser, loc.value)
            if len(where) == 1 and where[0].op_name.startswith("DW_OP_reg") and where[0].op_name[9:].isdigit():
                values[int(where[0].op_name[9:])] = parse_ops(parser, value.value)
        return cu, values


def _open(real: str) -> ModuleDwarf | None:
    from .debugfiles import dwarf_path

    source = dwarf_path(real)          # the file itself, or its separate debug file
    if source is None:
        return None
    try:
        return ModuleDwarf(source)
    except Exception:  # noqa: BLE001
        # pyelftools raises a zoo (ELFError, DWARFError, construct errors) on odd
        # files; a module whose DWARF does not parse simply has none.
        return None


_cache: FileCache[ModuleDwarf | None] = FileCache(_open, size=64)


def dwarf_for(path: str) -> ModuleDwarf | None:
    """The DWARF of a module file, opened once per file version; None when it has none.

    The one place that decides which file holds a module's DWARF: the module's own
    file, or its separate debug file (symbols.debugfiles.dwarf_path)."""
    try:
        return _cache.get(path)
    except TargetError:
        return None
