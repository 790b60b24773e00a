"""C types from DWARF DIEs (base, pointer, struct, union, array, enum; typedefs and qualifiers
seen through), and the C base types a cast may name without any DWARF (`(unsigned char)x`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# DW_ATE_* encodings of base types (DWARF 5, 7.8).
_ENCODINGS = {0x02: "bool", 0x04: "float", 0x05: "signed", 0x06: "signed_char", 0x07: "unsigned",
              0x08: "unsigned_char", 0x10: "unsigned"}


@dataclass(eq=False)
class Member:
    name: str                   # "" for an anonymous struct or union member
    offset: int                 # bytes from the start of the aggregate
    type: CType
    bit_size: int = 0           # a bit field: its width, and its first bit from `offset`
    bit_offset: int = 0


@dataclass(eq=False)
class CType:
    """One C type. Not frozen: a struct is cached before its members are read, so
    `struct node { struct node *next; }` refers to itself without recursing forever."""

    kind: str                   # base | enum | pointer | struct | union | array | function | void
    name: str                   # as C spells it: "int", "struct req", "char *", "long [5]"
    size: int
    encoding: str = ""          # base and enum: signed | unsigned | signed_char | unsigned_char | bool | float
    target: CType | None = None  # pointer: the pointee (None: void *); array: the element type
    count: int | None = None    # array: element count (None when unknown: `int a[]`)
    members: list[Member] = field(default_factory=list)
    enumerators: dict[int, str] = field(default_factory=dict)
    complete: bool = True       # False for a struct only declared here (`struct FILE;`)

    @property
    def signed(self) -> bool:
        return self.encoding in ("signed", "signed_char")

    @property
    def is_char(self) -> bool:
        # By name too: uint8_t is an unsigned char to DWARF, but its arrays are bytes, not text.
        return (self.kind == "base" and self.size == 1 and self.encoding in ("signed_char", "unsigned_char")
                and "char" in self.name)

    @property
    def is_scalar(self) -> bool:
        return self.kind in ("base", "enum", "pointer")

    def member(self, name: str) -> tuple[int, Member] | None:
        """(extra offset, member) for `name`, looking into anonymous struct/union members."""
        for m in self.members:
            if m.name == name:
                return 0, m
        for m in self.members:
            if not m.name and m.type.kind in ("struct", "union"):
                found = m.type.member(name)
                if found is not None:
                    return m.offset + found[0], found[1]
        return None


VOID = CType("void", "void", 0)


def pointer_to(target: CType | None) -> CType:
    inner = target.name if target is not None else "void"
    return CType("pointer", inner + ("*" if inner.endswith("*") else " *"), 8, "unsigned", target)


# C spellings of the base types, as sorted word tuples (`long unsigned int` == `unsigned long`).
def _words(text: str) -> tuple[str, ...]:
    words = [w for w in text.split() if w not in ("const", "volatile", "restrict")]
    if "int" in words and any(w in words for w in ("short", "long", "unsigned", "signed")):
        words.remove("int")
    if words == ["signed"]:
        words = ["int"]
    return tuple(sorted(words))


_C_BASE: dict[tuple[str, ...], tuple[str, int, str]] = {}
for _spelling, _size, _enc in (
        ("char", 1, "signed_char"), ("signed char", 1, "signed_char"), ("unsigned char", 1, "unsigned_char"),
        ("short", 2, "signed"), ("unsigned short", 2, "unsigned"), ("signed short", 2, "signed"),
        ("int", 4, "signed"), ("unsigned", 4, "unsigned"), ("unsigned int", 4, "unsigned"),
        ("long", 8, "signed"), ("unsigned long", 8, "unsigned"), ("signed long", 8, "signed"),
        ("long long", 8, "signed"), ("unsigned long long", 8, "unsigned"), ("signed long long", 8, "signed"),
        ("_Bool", 1, "bool"), ("bool", 1, "bool"), ("float", 4, "float"), ("double", 8, "float"),
        ("int8_t", 1, "signed"), ("uint8_t", 1, "unsigned"), ("int16_t", 2, "signed"),
        ("uint16_t", 2, "unsigned"), ("int32_t", 4, "signed"), ("uint32_t", 4, "unsigned"),
        ("int64_t", 8, "signed"), ("uint64_t", 8, "unsigned"), ("size_t", 8, "unsigned"),
        ("ssize_t", 8, "signed"), ("intptr_t", 8, "signed"), ("uintptr_t", 8, "unsigned")):
    _C_BASE[_words(_spelling)] = (_spelling, _size, _enc)


def c_base_type(text: str) -> CType | None:
    """A C base type or `void` by its spelling (`unsigned long`, `uint32_t`), or None."""
    words = _words(text)
    if words == ("void",):
        return VOID
    known = _C_BASE.get(words)
    if known is None:
        return None
    return CType("base", known[0], known[1], known[2])


def split_pointer(text: str) -> tuple[str, int]:
    """("struct req", 1) for "struct req *": the base spelling and the pointer depth."""
    text = " ".join(text.split())
    depth = 0
    while text.endswith("*"):
        depth += 1
        text = text[:-1].rstrip()
    return text, depth


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int_attr(die: Any, name: str, default: int = 0) -> int:
    attr = die.attributes.get(name)
    if attr is None or not isinstance(attr.value, int):
        return default
    return int(attr.value)


class TypeBuilder:
    """Builds CTypes from the DIEs of one file, each DIE once (by its offset)."""

    def __init__(self) -> None:
        self._cache: dict[int, CType] = {}

    def of(self, die: Any) -> CType:
        """The type a variable or member DIE has (its DW_AT_type), void when it has none."""
        if "DW_AT_type" not in die.attributes:
            return VOID
        return self.build(die.get_DIE_from_attribute("DW_AT_type"))

    def build(self, die: Any) -> CType:
        cached = self._cache.get(die.offset)
        if cached is not None:
            return cached
        tag = die.tag
        name = _text(die.attributes["DW_AT_name"].value) if "DW_AT_name" in die.attributes else ""
        size = _int_attr(die, "DW_AT_byte_size")
        if tag == "DW_TAG_base_type":
            enc = _ENCODINGS.get(_int_attr(die, "DW_AT_encoding"), "unsigned")
            out = self._cache[die.offset] = CType("base", name, size, enc)
            return out
        if tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type"):
            # A placeholder first: the pointee may be a struct that points back here.
            out = self._cache[die.offset] = CType("pointer", "void *", size or 8, "unsigned")
            target = self.of(die)
            out.target = None if target.kind == "void" else target
            out.name = pointer_to(out.target).name
            return out
        if tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type"):
            kind = "union" if tag == "DW_TAG_union_type" else "struct"
            out = self._cache[die.offset] = CType(
                kind, f"{kind} {name}" if name else f"{kind} <anonymous>", size,
                complete="DW_AT_declaration" not in die.attributes)
            for child in die.iter_children():
                if child.tag == "DW_TAG_member":
                    out.members.append(self._member(child))
            return out
        if tag == "DW_TAG_enumeration_type":
            under = self.of(die)
            enc = under.encoding if under.kind == "base" else "unsigned"
            out = self._cache[die.offset] = CType("enum", f"enum {name}" if name else "enum <anonymous>",
                                                  size or under.size or 4, enc)
            for child in die.iter_children():
                if child.tag == "DW_TAG_enumerator":
                    out.enumerators[int(child.attributes["DW_AT_const_value"].value)] = \
                        _text(child.attributes["DW_AT_name"].value)
            return out
        if tag == "DW_TAG_array_type":
            out = self._cache[die.offset] = CType("array", "", 0)
            element = self.of(die)
            counts = [self._count(c) for c in die.iter_children() if c.tag == "DW_TAG_subrange_type"]
            # `int m[2][3]` is one DIE with two subranges: an array of arrays, built inside out.
            inner = element
            for n in reversed(counts[1:]):
                inner = CType("array", f"{element.name} [{n}]", inner.size * (n or 0), target=inner, count=n)
            n = counts[0] if counts else None
            out.target, out.count = inner, n
            out.size = inner.size * (n or 0)
            out.name = f"{element.name} [{n if n is not None else ''}]"
            return out
        if tag == "DW_TAG_subroutine_type":
            out = self._cache[die.offset] = CType("function", "function", 0)
            return out
        if tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
                   "DW_TAG_atomic_type"):
            target = self.of(die)
            if tag == "DW_TAG_typedef" and name:
                # The typedef's name for display; the same members list, so a struct
                # still being built is complete by the time anyone reads it.
                out = dataclasses.replace(target, name=name)
            else:
                out = target
            self._cache[die.offset] = out
            return out
        out = self._cache[die.offset] = CType("void", name or tag, size)
        return out

    def _member(self, die: Any) -> Member:
        name = _text(die.attributes["DW_AT_name"].value) if "DW_AT_name" in die.attributes else ""
        mtype = self.of(die)
        bit_size = _int_attr(die, "DW_AT_bit_size")
        if "DW_AT_data_bit_offset" in die.attributes:
            bits = _int_attr(die, "DW_AT_data_bit_offset")
            return Member(name, bits // 8, mtype, bit_size, bits % 8)
        offset = _int_attr(die, "DW_AT_data_member_location")
        if bit_size and "DW_AT_bit_offset" in die.attributes:
            # DWARF 2-3 big-endian-style bit offset, counted from the storage unit's top bit.
            unit = _int_attr(die, "DW_AT_byte_size", mtype.size) * 8
            bits = unit - _int_attr(die, "DW_AT_bit_offset") - bit_size
            return Member(name, offset + bits // 8, mtype, bit_size, bits % 8)
        return Member(name, offset, mtype, bit_size, 0)

    @staticmethod
    def _count(die: Any) -> int | None:
        if "DW_AT_count" in die.attributes and isinstance(die.attributes["DW_AT_count"].value, int):
            return int(die.attributes["DW_AT_count"].value)
        if "DW_AT_upper_bound" in die.attributes and isinstance(die.attributes["DW_AT_upper_bound"].value, int):
            return int(die.attributes["DW_AT_upper_bound"].value) + 1
        return None
