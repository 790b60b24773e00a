"""The expression language on typed values (issue 15): members, elements, pointers, casts,
sizeof, over symbols.dwarf_values.TypedValue with types built by hand (no DWARF, no process)."""

from __future__ import annotations

import struct

import pytest

from instrument.errors import EvaluationError, ExpressionError
from instrument.expr import parse, parse_format
from instrument.expr.values import CastType, Value
from instrument.symbols.dwarf_types import CType, Member, c_base_type, pointer_to
from instrument.symbols.dwarf_values import DwarfCastType, SymbolValue, TypedValue

INT = CType("base", "int", 4, "signed")
USHORT = CType("base", "unsigned short", 2, "unsigned")
CHAR = CType("base", "char", 1, "signed_char")
COLOR = CType("enum", "enum color", 4, "unsigned", enumerators={0: "RED", 5: "GREEN"})
REQ = CType("struct", "struct req", 0)
REQ.members = [Member("path", 0, pointer_to(CHAR)), Member("len", 8, USHORT), Member("color", 12, COLOR),
               Member("next", 16, pointer_to(REQ)), Member("vals", 24, CType("array", "int [3]", 12, target=INT,
                                                                            count=3))]
REQ.size = 40
BASE = 0x1000
# A struct req at 0x1000 whose path points at "hi" (0x1100); a global int at 0x1200.
MEMORY = bytearray(0x300)
struct.pack_into("<QHxxIQiii", MEMORY, 0, 0x1100, 7, 5, 0, 10, -20, 30)
MEMORY[0x100:0x103] = b"hi\0"
struct.pack_into("<i", MEMORY, 0x200, -3)


def read(address: int, size: int) -> bytes:
    off = address - BASE
    if off < 0 or off + size > len(MEMORY):
        raise EvaluationError(f"cannot read {size} bytes at {address:#x}")
    return bytes(MEMORY[off:off + size])


class Env:
    def __init__(self) -> None:
        self.names: dict[str, Value] = {
            "req": TypedValue(pointer_to(REQ), read, data=BASE.to_bytes(8, "little")),
            "r": TypedValue(REQ, read, address=BASE),
            "g": SymbolValue(TypedValue(INT, read, address=0x1200)),
        }

    def register(self, name: str) -> int:
        return {"rdi": BASE}.get(name, 0)

    def read_memory(self, address: int, size: int) -> bytes:
        return read(address, size)

    def lookup(self, name: str) -> Value:
        if name not in self.names:
            raise EvaluationError(f"unknown name '{name}'")
        return self.names[name]

    def type_named(self, name: str) -> CastType:
        if name == "struct req *":
            return DwarfCastType(pointer_to(REQ), read)
        found = c_base_type(name)
        if found is None:
            raise EvaluationError(f"unknown type '{name}'")
        return DwarfCastType(found, read)


def ev(text: str) -> object:
    return parse(text).evaluate(Env())


@pytest.mark.parametrize(("text", "value"), [
    ("req->len", 7), ("r.len", 7), ("req.len", 7), ("(*req).len", 7), ("req->vals[2]", 30), ("r.vals[1]", -20),
    ("req->len * 2 + 1", 15), ("req->vals[1] < 0", 1), ("str(req->path)", "hi"), ("*req->path", ord("h")),
    ("req->path[1]", ord("i")), ("((struct req *)rdi)->len", 7), ("(unsigned char)-1", 255), ("(char)200", -56),
    ("(int)0xffffffff", -1), ("sizeof(struct req *)", 8), ("sizeof(req)", 8), ("sizeof(r)", 40),
    ("sizeof r.vals", 12), ("sizeof(unsigned short)", 2), ("&r.vals[1]", BASE + 28), ("g", 0x1200), ("*g", -3),
    ("u32[g] == 0xfffffffd", 1), ("(rdi) - 1", BASE - 1), ("(rdi)", BASE),
])
def test_typed_expressions(text: str, value: object) -> None:
    result = ev(text)
    assert (int(result) if not isinstance(result, str) else result) == value   # type: ignore[call-overload]


def test_values_keep_their_types_in_formats_and_records() -> None:
    env = Env()
    assert parse_format("{req->color} {r.len:#x} {req->path} {*g}").render(env) == 'GREEN 0x7 0x1100 "hi" -3'
    assert parse("r").evaluate(env).to_json(3, 2) == {  # type: ignore[union-attr]
        "path": {"pointer": "0x1100", "string": "hi"}, "len": 7, "color": "GREEN", "next": {"pointer": "0x0"},
        "vals": [10, -20, "... 1 more"]}
    assert parse("g").evaluate(env).to_json(3, 8) == -3   # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "message"), [
    ("req->nope", "struct req has no member 'nope' (members: path, len, color, next, vals)"),
    ("r->len", "'->len' needs a pointer; this is a struct req (use '.')"),
    ("req->next->len", "null pointer (struct req *)"),
    ("r + 1", "cannot use a struct req as a number"),
    ("rdi->len", "needs a typed value"),
    ("*rdi", "needs a typed value"),
    ("req->len[0]", "cannot index a unsigned short"),
    ("(struct nope *)rdi", "unknown type 'struct nope *'"),
])
def test_what_a_type_does_not_allow_is_an_evaluation_error(text: str, message: str) -> None:
    with pytest.raises(EvaluationError) as e:
        ev(text)
    assert message in str(e.value)


@pytest.mark.parametrize(("text", "column"), [("(struct req *", 13), ("p->", 3), ("sizeof(int", 10)])
def test_type_syntax_errors(text: str, column: int) -> None:
    with pytest.raises(ExpressionError) as e:
        parse(text)
    assert e.value.column == column
