"""The expression language's evaluator: the AST compiled once into closures, and parse(text) -> Expr."""

from __future__ import annotations

import operator
import re
from functools import lru_cache
from typing import Callable

from ..errors import EvaluationError, ExpressionError
from ..arch.x86_64 import MASK64
from .parser import Node, Parser
from .values import (BUILTIN_NAMES, MAX_LENGTH, MAX_SHIFT, STR_CAP, STR_LIMIT_CAP, Env, Expr, Fn, NoEnv,
                     Object, Value)

_PAGE = 4096


def _int(value: Value, op: str) -> int:
    if isinstance(value, str):
        raise EvaluationError(f"cannot apply '{op}' to a string")
    if isinstance(value, Object):
        return value.scalar()
    return value


def _plain(value: Value) -> int | str:
    """A typed value as the integer arithmetic and comparisons see it."""
    return value.scalar() if isinstance(value, Object) else value


def _cdiv(a: int, b: int) -> int:
    if b == 0:
        raise EvaluationError("division by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def _shl(a: int, b: int) -> int:
    if b < 0:
        raise EvaluationError("negative shift count")
    if b > MAX_SHIFT:
        raise EvaluationError(f"shift count {b} larger than {MAX_SHIFT}")
    return a << b


def _shr(a: int, b: int) -> int:
    if b < 0:
        raise EvaluationError("negative shift count")
    return a >> b


_ARITH: dict[str, Callable[[int, int], int]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": _cdiv, "%": _cmod,
    "&": operator.and_, "|": operator.or_, "^": operator.xor, "<<": _shl, ">>": _shr,
}
_COMPARE: dict[str, Callable[[int | str, int | str], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}


def _address(value: Value) -> int:
    if isinstance(value, str):
        raise EvaluationError("a memory address must be an integer, not a string")
    if isinstance(value, Object):
        value = value.scalar()
    if not 0 <= value <= MASK64:
        raise EvaluationError(f"address {value:#x} is outside the 64-bit address space")
    return value


def read_c_string(env: Env, address: int, limit: int = STR_CAP) -> str:
    """The NUL-terminated string at `address`, at most `limit` bytes.

    Reads start small (most strings are short, and a ptrace backend may pay
    per word) and double, but never cross a page boundary: memory is mapped
    by whole pages, so a string that ends just before an unmapped page still
    reads, and a failed read after the first means the string ran into one.
    """
    out = bytearray()
    chunk = 64
    while len(out) < limit:
        size = min(chunk, _PAGE - address % _PAGE, limit - len(out))
        try:
            data = env.read_memory(address, size)
        except EvaluationError:
            if not out:
                raise
            break
        nul = data.find(b"\0")
        if nul >= 0:
            out += data[:nul]
            break
        out += data
        if len(data) < size:
            break
        address += size
        chunk = min(chunk * 2, _PAGE)
    return out.decode("utf-8", "backslashreplace")


def _compile_binary(op: str, left: Fn, right: Fn) -> Fn:
    if op == "and":
        return lambda env: 1 if left(env) and right(env) else 0
    if op == "or":
        return lambda env: 1 if left(env) or right(env) else 0
    if op in _COMPARE:
        cmp = _COMPARE[op]

        def compare(env: Env) -> Value:
            a, b = _plain(left(env)), _plain(right(env))
            if isinstance(a, str) != isinstance(b, str):
                raise EvaluationError(f"cannot compare a string with an integer ('{op}')")
            return 1 if cmp(a, b) else 0
        return compare
    fn = _ARITH[op]
    return lambda env: fn(_int(left(env), op), _int(right(env), op))


def _compile_unary(op: str, operand: Fn) -> Fn:
    if op == "not":
        return lambda env: 0 if operand(env) else 1
    if op == "~":
        return lambda env: ~_int(operand(env), "~") & MASK64
    return lambda env: -_int(operand(env), "-")


def _compile_mem(size: int, signed: bool, address: Fn) -> Fn:
    def read(env: Env) -> Value:
        at = _address(address(env))
        data = env.read_memory(at, size)
        if len(data) != size:
            raise EvaluationError(f"cannot read {size} bytes at {at:#x}")
        return int.from_bytes(data, "little", signed=signed)
    return read


def _compile_cstr(address: Fn, limit: Fn | None) -> Fn:
    def read(env: Env) -> Value:
        at = _address(address(env))
        n = STR_CAP if limit is None else _int(limit(env), "str")
        if n < 0:
            raise EvaluationError("str() length must not be negative")
        return read_c_string(env, at, min(n, STR_LIMIT_CAP))
    return read


_DYNAMIC = frozenset({"reg", "name", "mem", "cstr", "member", "index", "deref", "addr", "cast", "sizeof"})
_TYPED = frozenset({"member", "index", "deref", "addr", "cast", "sizeof"})


def _typed(value: Value, what: str) -> Object:
    if isinstance(value, Object):
        return value
    kind = "a string" if isinstance(value, str) else "a plain integer"
    raise EvaluationError(f"{what} needs a typed value (a variable from debug information), not {kind}"
                          + ("; read memory with u8[...] .. u64[...]" if not isinstance(value, str) else ""))


def _compile_typed(node: Node, args: list[Fn]) -> Fn:
    kind, value = node.kind, str(node.value)
    if kind == "member":
        base, arrow = args[0], node.signed
        op = "->" if arrow else "."
        return lambda env: _typed(base(env), f"'{op}{value}'").member(value, arrow)
    if kind == "index":
        base, index = args[0], args[1]
        return lambda env: _typed(base(env), "'[...]'").index(_int(index(env), "[]"))
    if kind == "deref":
        operand = args[0]
        return lambda env: _typed(operand(env), "'*'").deref()
    if kind == "addr":
        operand = args[0]
        return lambda env: _typed(operand(env), "'&'").address_of()
    if kind == "cast":
        operand = args[0]
        return lambda env: env.type_named(value).cast(operand(env))
    if args:        # sizeof expr
        operand = args[0]
        return lambda env: _typed(operand(env), "sizeof").size
    if node.signed:     # sizeof(name): a variable's size, else a type's
        def size(env: Env) -> Value:
            try:
                found = env.lookup(value)
            except EvaluationError:
                return env.type_named(value).size
            return _typed(found, "sizeof").size
        return size
    return lambda env: env.type_named(value).size


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def _compile_name(name: str) -> Fn:
    parts = name.split(".")
    if len(parts) == 1 or not all(_IDENTIFIER.match(p) for p in parts):
        return lambda env: env.lookup(name)

    def lookup(env: Env) -> Value:
        # `foo.cold` is a symbol; `hdr.len` a variable's member: the whole name first.
        try:
            return env.lookup(name)
        except EvaluationError as whole:
            try:
                value = env.lookup(parts[0])
            except EvaluationError:
                raise whole from None
        for part in parts[1:]:
            value = _typed(value, f"'.{part}'").member(part, False)
        return value
    return lookup


def _is_constant(node: Node) -> bool:
    return all(n.kind not in _DYNAMIC for n in node.walk())


def _compile(node: Node) -> Fn:
    fn = _compile_node(node)
    if node.kind in ("unary", "binary") and _is_constant(node):
        # Fold once; an error (1/0) stays in the closure and surfaces per evaluation.
        try:
            value = fn(NoEnv())
        except EvaluationError:
            return fn
        return lambda env: value
    return fn


def _compile_node(node: Node) -> Fn:
    kind, value = node.kind, node.value
    if kind in ("num", "str"):
        return lambda env: value
    if kind == "reg":
        name = str(value)
        return lambda env: env.register(name)
    if kind == "name":
        return _compile_name(str(value))
    args = [_compile(a) for a in node.args]
    if kind in _TYPED:
        return _compile_typed(node, args)
    if kind == "unary":
        return _compile_unary(str(value), args[0])
    if kind == "binary":
        return _compile_binary(str(value), args[0], args[1])
    if kind == "mem":
        return _compile_mem(node.size, node.signed, args[0])
    return _compile_cstr(args[0], args[1] if len(args) > 1 else None)


def _kind(node: Node) -> str:
    """The static type of a node's value: "int", "str", or "any" (a name's value)."""
    if node.kind in ("str", "cstr"):
        return "str"
    return "any" if node.kind == "name" or (node.kind in _TYPED and node.kind != "sizeof") else "int"


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> Expr:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise ExpressionError("empty expression", 0)
    tree = Parser(text).parse()
    names = frozenset(
        str(n.value) for n in tree.walk() if n.kind == "name" and n.value not in BUILTIN_NAMES
    )
    nodes = tree.walk()
    reads = None if any(n.kind in ("mem", "cstr") or n.kind in _TYPED for n in nodes) else frozenset(
        str(n.value) for n in nodes if n.kind == "reg" or (n.kind == "name" and _names_register(str(n.value))))
    typed = any(n.kind in _TYPED or (n.kind == "name" and "." in str(n.value)) for n in nodes)
    return Expr(text, names, _compile(tree), _is_constant(tree), _kind(tree), reads, typed)


def _names_register(name: str) -> bool:
    """retval and argN (engine/context.py): registers, or, for an argument past the
    ABI's registers, the stack; the reader of `reads` decides which."""
    return name == "retval" or (len(name) == 4 and name.startswith("arg") and name[3].isdigit())


SOURCE_LINE = re.compile(r"^[A-Za-z0-9_./+-]+\.[A-Za-z0-9+]+:[0-9]+$")


def source_line(text: str) -> Expr:
    """`loop.c:42` as an expression: the address of that source line, looked up by name.

    The tokenizer cannot spell it (`:` is not an operator), so `parse` hands
    such addresses here; the Env resolves the whole text through DWARF."""
    return Expr(text, frozenset({text}), lambda env: env.lookup(text), False, "int")


def parse(text: str | int) -> Expr:
    """Parse an expression (or wrap the int YAML gave); raises ExpressionError."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ExpressionError(f"expected an expression, got {type(text).__name__}", 0)
    if isinstance(text, int):
        value = text
        return Expr(hex(value), frozenset(), lambda env: value, True, "int")
    if SOURCE_LINE.match(text.strip()):
        return source_line(text.strip())
    return _parse_text(text)
