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
                     Value)

_PAGE = 4096


def _int(value: Value, op: str) -> int:
    if isinstance(value, str):
        raise EvaluationError(f"cannot apply '{op}' to a string")
    return value


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
_COMPARE: dict[str, Callable[[Value, Value], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}


def _address(value: Value) -> int:
    if isinstance(value, str):
        raise EvaluationError("a memory address must be an integer, not a string")
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
            a, b = left(env), right(env)
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


_DYNAMIC = frozenset({"reg", "name", "mem", "cstr"})


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
        name = str(value)
        return lambda env: env.lookup(name)
    args = [_compile(a) for a in node.args]
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
    return "any" if node.kind == "name" else "int"


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
    reads = None if any(n.kind in ("mem", "cstr") for n in nodes) else frozenset(
        str(n.value) for n in nodes if n.kind == "reg" or (n.kind == "name" and _names_register(str(n.value))))
    return Expr(text, names, _compile(tree), _is_constant(tree), _kind(tree), reads)


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
