"""Values with C types: what a DWARF variable evaluates to in an expression, and its JSON form.

A TypedValue is in memory (an address; bytes are read only when needed, so
`req->path` reads 8 bytes, not the whole struct) or already in hand (a
register, DW_OP_stack_value, a cast). Every failure is an EvaluationError
that says what could not be done, never a made-up value.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from ..errors import EvaluationError
from ..expr.values import CastType, Object, Value
from .dwarf_types import CType, pointer_to

Reader = Callable[[int, int], bytes]      # raises EvaluationError
STRING_LIMIT = 256                        # bytes of a char * or char [] shown in records


def _hex(v: int) -> str:
    return f"{v:#x}"


class TypedValue(Object):
    def __init__(self, ctype: CType, read: Reader, *, address: int | None = None, data: bytes | None = None,
                 bit_size: int = 0, bit_offset: int = 0) -> None:
        self.ctype, self._read, self.address, self._data = ctype, read, address, data
        self.bit_size, self.bit_offset = bit_size, bit_offset

    def __repr__(self) -> str:
        where = _hex(self.address) if self.address is not None else "value"
        return f"<{self.ctype.name} at {where}>"

    @property
    def size(self) -> int:
        return self.ctype.size

    # -- bytes and numbers ---------------------------------------------------------------
    def raw(self) -> bytes:
        if self._data is not None:
            return self._data
        if self.address is None:
            raise EvaluationError(f"{self.ctype.name}: no value")
        data = self._read(self.address, self.ctype.size)
        if len(data) != self.ctype.size:
            raise EvaluationError(f"cannot read {self.ctype.size} bytes at {self.address:#x}")
        return data

    def _integer(self) -> int:
        data = self.raw()
        if self.bit_size:
            bits = int.from_bytes(data, "little") >> self.bit_offset & ((1 << self.bit_size) - 1)
            if self.ctype.signed and bits >> (self.bit_size - 1):
                bits -= 1 << self.bit_size
            return bits
        return int.from_bytes(data, "little", signed=self.ctype.signed)

    def scalar(self) -> int:
        kind = self.ctype.kind
        if kind in ("array", "function"):
            if self.address is None:
                raise EvaluationError(f"{self.ctype.name} is not in memory: it has no address")
            return self.address
        if kind in ("struct", "union"):
            raise EvaluationError(f"cannot use a {self.ctype.name} as a number (name one of its members)")
        if kind == "void":
            raise EvaluationError(f"'{self.ctype.name}' has no value")
        if self.ctype.encoding == "float":
            raise EvaluationError(f"{self.ctype.name} is floating point: only integers take part in expressions")
        return self._integer()

    def number(self) -> int | float | bool:
        """For records and format specs: floats decoded, bools as bools."""
        if self.ctype.kind == "base" and self.ctype.encoding == "float" and self.ctype.size in (4, 8):
            return float(struct.unpack("<f" if self.ctype.size == 4 else "<d", self.raw())[0])
        if self.ctype.kind == "base" and self.ctype.encoding == "bool":
            return self._integer() != 0
        return self.scalar()

    # -- C operators ------------------------------------------------------------------------
    def _sub(self, ctype: CType, offset: int, bit_size: int = 0, bit_offset: int = 0) -> TypedValue:
        if self.address is not None:
            return TypedValue(ctype, self._read, address=self.address + offset,
                              bit_size=bit_size, bit_offset=bit_offset)
        data = self.raw()
        size = ctype.size + (1 if bit_size and bit_offset + bit_size > ctype.size * 8 else 0)
        if offset < 0 or offset + size > len(data):
            raise EvaluationError(f"offset {offset} is outside this {self.ctype.name} (held in a register)")
        return TypedValue(ctype, self._read, data=data[offset:offset + ctype.size], bit_size=bit_size,
                          bit_offset=bit_offset)

    def member(self, name: str, arrow: bool) -> Value:
        value: TypedValue = self
        if self.ctype.kind == "pointer":
            value = self._pointee()           # `p.x` as gdb allows it, as well as `p->x`
        elif arrow:
            raise EvaluationError(f"'->{name}' needs a pointer; this is a {self.ctype.name} (use '.')")
        t = value.ctype
        if t.kind not in ("struct", "union"):
            raise EvaluationError(f"a {t.name} has no members (asked for '{name}')")
        if not t.complete:
            raise EvaluationError(f"{t.name} is only declared here: its members are unknown")
        found = t.member(name)
        if found is None:
            names = ", ".join(m.name for m in t.members if m.name) or "none"
            raise EvaluationError(f"{t.name} has no member '{name}' (members: {names})")
        extra, m = found
        return value._sub(m.type, extra + m.offset, m.bit_size, m.bit_offset)

    def index(self, i: int) -> Value:
        t = self.ctype
        if t.kind == "array" and t.target is not None:
            if self.address is None and not 0 <= i < (t.count or 0):
                raise EvaluationError(f"index {i} outside {t.name}")
            return self._sub(t.target, i * t.target.size)
        if t.kind == "pointer":
            target = self._target_type()
            return TypedValue(target, self._read, address=self._integer() + i * target.size)
        raise EvaluationError(f"cannot index a {t.name}: it is neither an array nor a pointer")

    def _target_type(self) -> CType:
        target = self.ctype.target
        if target is None or target.kind == "void":
            raise EvaluationError("cannot dereference a void *: cast it first, e.g. (struct req *)p")
        if target.kind == "function":
            raise EvaluationError("cannot dereference a function pointer")
        return target

    def _pointee(self) -> TypedValue:
        target = self._target_type()
        address = self._integer()
        if address == 0:
            raise EvaluationError(f"null pointer ({self.ctype.name})")
        return TypedValue(target, self._read, address=address)

    def deref(self) -> Value:
        if self.ctype.kind == "pointer":
            return self._pointee()
        if self.ctype.kind == "array":
            return self.index(0)
        raise EvaluationError(f"cannot dereference a {self.ctype.name}: it is not a pointer")

    def address_of(self) -> Value:
        if self.address is None or self.bit_size:
            raise EvaluationError(f"this {self.ctype.name} is not in memory (a register or a computed value)")
        return TypedValue(pointer_to(self.ctype), self._read, data=self.address.to_bytes(8, "little"))

    # -- showing it --------------------------------------------------------------------------
    def _string_at(self, address: int, limit: int) -> str | None:
        out = bytearray()
        while len(out) < limit:
            want = min(64, limit - len(out), 4096 - (address + len(out)) % 4096)
            try:
                chunk = self._read(address + len(out), want)
            except EvaluationError:
                return None if not out else out.decode("utf-8", "backslashreplace")
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                break
            out += chunk
            if len(chunk) < want:
                break
        return out.decode("utf-8", "backslashreplace")

    def _char_array(self) -> str:
        data = self.raw()
        nul = data.find(b"\0")
        return (data if nul < 0 else data[:nul])[:STRING_LIMIT].decode("utf-8", "backslashreplace")

    def to_json(self, depth: int, length: int) -> Any:
        t = self.ctype
        if t.kind == "enum":
            v = self._integer()
            return t.enumerators.get(v, v)
        if t.kind == "base":
            return self.number()
        if t.kind == "pointer":
            p = self._integer()
            out: dict[str, Any] = {"pointer": _hex(p)}
            target = t.target
            if p == 0 or target is None or target.kind in ("void", "function") or not target.complete:
                return out
            if target.is_char:
                text = self._string_at(p, STRING_LIMIT)
                if text is not None:
                    out["string"] = text
                return out
            if depth > 0:
                try:
                    out["value"] = TypedValue(target, self._read, address=p).to_json(depth - 1, length)
                except EvaluationError:
                    pass      # an unreadable pointee: the pointer alone
            return out
        if t.kind in ("struct", "union"):
            if depth <= 0 or not t.complete:
                return "{...}"
            fields: dict[str, Any] = {}
            for m in t.members:
                sub = self._sub(m.type, m.offset, m.bit_size, m.bit_offset)
                value = sub.to_json(depth - 1 if m.name else depth, length)
                if m.name:
                    fields[m.name] = value
                elif isinstance(value, dict):
                    fields.update(value)
            return fields
        if t.kind == "array" and t.target is not None:
            if t.target.is_char:
                return self._char_array()
            count = t.count or 0
            items = [self._sub(t.target, i * t.target.size).to_json(depth - 1, length)
                     for i in range(min(count, length))]
            if count > length:
                items.append(f"... {count - length} more")
            return items
        if t.kind == "function" and self.address is not None:
            return {"function": _hex(self.address)}
        raise EvaluationError(f"'{t.name}' has no value")

    def text(self, depth: int = 2) -> str:
        """gdb's way of printing it: `{path = 0x4006 "/etc", len = 4}`, `GREEN`, `97 'a'`."""
        t = self.ctype
        if t.kind == "enum":
            v = self._integer()
            return t.enumerators.get(v, str(v))
        if t.kind == "base":
            n = self.number()
            if t.is_char and isinstance(n, int) and 32 <= n < 127:
                return f"{n} {chr(n)!r}"
            return str(n).lower() if isinstance(n, bool) else str(n)
        if t.kind == "pointer":
            p = self._integer()
            if p and t.target is not None and t.target.is_char:
                s = self._string_at(p, STRING_LIMIT)
                return f"{p:#x}" if s is None else f'{p:#x} "{_escape(s)}"'
            return f"{p:#x}"
        if t.kind in ("struct", "union"):
            if depth <= 0 or not t.complete:
                return "{...}"
            parts = []
            for m in t.members:
                sub = self._sub(m.type, m.offset, m.bit_size, m.bit_offset)
                parts.append(f"{m.name} = {sub.text(depth - 1)}" if m.name else sub.text(depth))
            return "{" + ", ".join(parts) + "}"
        if t.kind == "array" and t.target is not None:
            if t.target.is_char:
                return f'"{_escape(self._char_array())}"'
            count = t.count or 0
            shown = [self._sub(t.target, i * t.target.size).text(depth - 1) for i in range(min(count, 16))]
            return "{" + ", ".join(shown) + (", ..." if count > 16 else "") + "}"
        return f"{self.scalar():#x}"

    def __format__(self, spec: str) -> str:
        if not spec:
            return self.text()
        return format(self.number(), spec)


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")


class SymbolValue(TypedValue):
    """A global or static named in an expression. As a number it is its address, as a
    symbol's name always was (`u32[counter]`, `{counter:#x}`); `*g` is its value, and
    `g.m`, `g->m`, `g[i]`, `{g}` and records act on the variable as in C."""

    def __init__(self, variable: TypedValue) -> None:
        assert variable.address is not None
        super().__init__(pointer_to(variable.ctype), variable._read, data=variable.address.to_bytes(8, "little"))
        self.variable = variable

    def member(self, name: str, arrow: bool) -> Value:
        return self.variable.member(name, arrow)

    def index(self, i: int) -> Value:
        return self.variable.index(i)

    def deref(self) -> Value:
        return self.variable

    def to_json(self, depth: int, length: int) -> Any:
        return self.variable.to_json(depth, length)

    def text(self, depth: int = 2) -> str:
        return self.variable.text(depth)


class DwarfCastType(CastType):
    """A type a cast or sizeof names, bound to the memory its results read."""

    def __init__(self, ctype: CType, read: Reader) -> None:
        self.ctype, self._read = ctype, read

    @property
    def size(self) -> int:
        if self.ctype.kind in ("void", "function") or (self.ctype.kind == "struct" and not self.ctype.complete):
            raise EvaluationError(f"sizeof: '{self.ctype.name}' has no size")
        return self.ctype.size

    def cast(self, value: Value) -> Value:
        t = self.ctype
        if not t.is_scalar:
            raise EvaluationError(f"cannot cast to {t.name}: only to integer, enum and pointer types")
        if isinstance(value, str):
            raise EvaluationError(f"cannot cast a string to {t.name}")
        number = value.scalar() if isinstance(value, Object) else value
        data = (number & ((1 << (8 * t.size)) - 1)).to_bytes(t.size, "little")
        return TypedValue(t, self._read, data=data)
