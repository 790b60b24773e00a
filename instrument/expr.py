"""The safe expression language of recipes: tokenizer, parser, closure compiler, format strings.

Nothing here reaches Python's eval/exec/compile or getattr: an expression is
parsed into a small AST, then compiled once into nested closures that only
call the three methods of `Env`. Semantics, where they are a choice:

- precedence, loosest first: `or`, `and`, comparisons, `|`, `^`, `&`,
  `<< >>`, `+ -`, `* / %`, unary `- ~ not` (so `x & 1 == 0` means
  `(x & 1) == 0`, and `not a == b` means `(not a) == b` as with C's `!`);
- comparisons, `and`, `or` and `not` yield 1 or 0 (C, not Python: the
  result is always an int); `and`/`or` short-circuit; chained comparisons
  (`a < b < c`) are rejected rather than given C's or Python's meaning;
- integers are Python ints, never masked, except `~x` which yields the
  64-bit unsigned complement; `/` and `%` truncate toward zero like C;
- a module-qualified name `MODULE!SYMBOL` is one token; MODULE starts with a
  letter or `_` and runs over `[A-Za-z0-9_.+-]`, so `a+libc.so.6!malloc`
  reads as module `a+libc.so.6`: put spaces around operators there.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Protocol, Union

from .errors import EvaluationError, ExpressionError
from .arch.x86_64 import MASK64, is_register

MAX_LENGTH = 2000          # characters in one expression
MAX_FORMAT_LENGTH = 10000  # characters in one format string
MAX_NESTING = 64           # parentheses, brackets and unary operators inside each other
MAX_DEPTH = 100            # AST depth: bounds the closures' recursion at evaluation time
MAX_SHIFT = 1024           # `1 << 10**9` would allocate 125 MB; no register needs more
STR_CAP = 4096             # bytes str(e) reads at most
STR_LIMIT_CAP = 65536      # str(e, n) clamps n to this
MAX_FORMAT_WIDTH = 1000    # `{x:999999999}` would allocate a gigabyte per render
_PAGE = 4096

BUILTIN_NAMES: frozenset[str] = frozenset(
    {"arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "retval", "hits"}
)
MEMORY_TYPES: dict[str, tuple[int, bool]] = {
    "u8": (1, False), "u16": (2, False), "u32": (4, False), "u64": (8, False),
    "i8": (1, True), "i16": (2, True), "i32": (4, True), "i64": (8, True),
}
_KEYWORDS = frozenset({"and", "or", "not"})

Value = Union[int, str]


class Env(Protocol):
    """What evaluation needs from the engine."""

    def register(self, name: str) -> int:
        """Any name registers.is_register() accepts, sub-registers included."""
        ...

    def read_memory(self, address: int, size: int) -> bytes:
        """`size` bytes at `address`; raises EvaluationError when unreadable."""
        ...

    def lookup(self, name: str) -> Value:
        """arg0..arg5, retval, hits, params, event fields, symbols, `mod!sym`;
        raises EvaluationError for an unknown name."""
        ...


# ---------------------------------------------------------------- tokens

@dataclass(frozen=True)
class _Token:
    kind: str      # "int" | "str" | "name" | "op" | "end"
    text: str      # the source text (for "str": the decoded value)
    pos: int


_SPACE = re.compile(r"[ \t\r\n]+")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_]*")
_QUALIFIED = re.compile(r"[A-Za-z_][A-Za-z0-9_.+\-]*!(?!=)")
# `::` joins C++ scopes (`ns::Klass::method`); a lone `:` is never part of a name.
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.@$]*(?:::[A-Za-z_~][A-Za-z0-9_.@$]*)*")
_OPERATORS = ("<<", ">>", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%",
              "&", "|", "^", "~", "(", ")", "[", "]", ",", "<", ">")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
_HINTS = {"=": "; use '==' to compare", "!": "; use 'not'",
          "&&": "; use 'and'", "||": "; use 'or'"}


def _reject_dunder(name: str, pos: int) -> None:
    """Refuse Python dunder names (`__import__`, `a.__class__`).

    They could never reach getattr here, but a recipe that spells them is
    hostile or confused. Plain `__x` symbols (`__libc_start_main`) are real C
    names and stay allowed.
    """
    offset = 0
    for part in name.split("."):
        if len(part) > 4 and part.startswith("__") and part.endswith("__"):
            raise ExpressionError(f"name '{part}' is not allowed", pos + offset)
        offset += len(part) + 1


def _string(text: str, pos: int) -> tuple[str, int]:
    """Decode the string literal starting at `pos`; returns (value, end)."""
    quote = text[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        esc = text[i + 1: i + 2]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 2: i + 4]):
            out.append(chr(int(text[i + 2: i + 4], 16)))
            i += 4
        elif esc == "":
            break
        else:
            raise ExpressionError(f"unknown escape '\\{esc}'", i)
    raise ExpressionError("unterminated string", pos)


def _operator(text: str, pos: int) -> _Token:
    if text[pos: pos + 2] in ("&&", "||"):
        pair = text[pos: pos + 2]
        raise ExpressionError(f"unexpected '{pair}'{_HINTS[pair]}", pos)
    for op in _OPERATORS:
        if text.startswith(op, pos):
            return _Token("op", op, pos)
    c = text[pos]
    if c.isprintable() and c.isascii():
        raise ExpressionError(f"unexpected '{c}'{_HINTS.get(c, '')}", pos)
    raise ExpressionError(f"unexpected character {c!r}", pos)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _SPACE.match(text, pos)
        if m:
            pos = m.end()
            continue
        c = text[pos]
        if m := _NUMBER.match(text, pos):
            try:
                int(m.group(), 0)
            except ValueError:
                raise ExpressionError(f"invalid integer literal '{m.group()}'", pos) from None
            tokens.append(_Token("int", m.group(), pos))
        elif m := _QUALIFIED.match(text, pos):
            sym = _IDENT.match(text, m.end())
            if sym is None:
                raise ExpressionError("expected a symbol name after '!'", m.end())
            _reject_dunder(sym.group(), sym.start())
            tokens.append(_Token("name", text[pos: sym.end()], pos))
            m = sym
        elif m := _IDENT.match(text, pos):
            _reject_dunder(m.group(), pos)
            tokens.append(_Token("name", m.group(), pos))
        elif c in "\"'":
            value, end = _string(text, pos)
            tokens.append(_Token("str", value, pos))
            pos = end
            continue
        else:
            tokens.append(_operator(text, pos))
            pos += len(tokens[-1].text)
            continue
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------- AST

@dataclass(frozen=True)
class _Node:
    kind: str                       # num str reg name unary binary mem cstr
    value: Value = 0                # literal value, name, or operator
    args: tuple[_Node, ...] = ()
    depth: int = 1
    size: int = 0                   # mem: bytes to read
    signed: bool = False            # mem: sign-extend

    def walk(self) -> list[_Node]:
        out = [self]
        for a in self.args:
            out.extend(a.walk())
        return out


_BINARY_PREC = {
    "or": 1, "and": 2,
    "<": 3, "<=": 3, ">": 3, ">=": 3, "==": 3, "!=": 3,
    "|": 4, "^": 5, "&": 6, "<<": 7, ">>": 7,
    "+": 8, "-": 8, "*": 9, "/": 9, "%": 9,
}
_COMPARISON = 3


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "unexpected end of expression"
    if tok.kind == "str":
        return "unexpected string"
    if tok.kind == "int":
        return f"unexpected number '{tok.text}'"
    if tok.kind == "name":
        return f"unexpected name '{tok.text}'"
    return f"unexpected '{tok.text}'"


class _Parser:
    """Precedence climbing over the token list; one frame or three per nesting level."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.nesting = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, op: str, message: str) -> None:
        tok = self.peek()
        if tok.kind != "op" or tok.text != op:
            raise ExpressionError(message, tok.pos)
        self.i += 1

    def node(self, pos: int, kind: str, value: Value, *args: _Node,
             size: int = 0, signed: bool = False) -> _Node:
        depth = 1 + max((a.depth for a in args), default=0)
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested deeper than {MAX_DEPTH} levels", pos)
        return _Node(kind, value, args, depth, size, signed)

    def nest(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ExpressionError(f"expression nested deeper than {MAX_NESTING} levels", pos)

    def parse(self) -> _Node:
        tree = self.binary(0)
        if self.peek().kind != "end":
            raise ExpressionError(_describe(self.peek()), self.peek().pos)
        return tree

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind == "op" or (tok.kind == "name" and tok.text in ("and", "or")):
            return tok.text if tok.text in _BINARY_PREC else None
        return None

    def binary(self, min_prec: int) -> _Node:
        left = self.unary()
        last_prec = 0
        while (op := self.binary_op()) is not None and _BINARY_PREC[op] >= min_prec:
            prec = _BINARY_PREC[op]
            tok = self.take()
            if prec == _COMPARISON and last_prec == _COMPARISON:
                raise ExpressionError("chained comparison; combine them with 'and'", tok.pos)
            right = self.binary(prec + 1)
            left = self.node(tok.pos, "binary", op, left, right)
            last_prec = prec
        return left

    def unary(self) -> _Node:
        tok = self.peek()
        if (tok.kind == "op" and tok.text in ("-", "~")) or (tok.kind == "name" and tok.text == "not"):
            self.take()
            self.nest(tok.pos)
            operand = self.unary()
            self.nesting -= 1
            return self.node(tok.pos, "unary", tok.text, operand)
        return self.primary()

    def nested(self, pos: int) -> _Node:
        self.nest(pos)
        inner = self.binary(0)
        self.nesting -= 1
        return inner

    def primary(self) -> _Node:
        tok = self.take()
        if tok.kind == "int":
            return _Node("num", int(tok.text, 0))
        if tok.kind == "str":
            return _Node("str", tok.text)
        if tok.kind == "op" and tok.text == "(":
            inner = self.nested(tok.pos)
            self.expect(")", "expected ')'")
            return inner
        if tok.kind == "name" and tok.text not in _KEYWORDS:
            return self.name(tok)
        raise ExpressionError(_describe(tok), tok.pos)

    def name(self, tok: _Token) -> _Node:
        after = self.peek()
        if tok.text in MEMORY_TYPES:
            size, signed = MEMORY_TYPES[tok.text]
            self.expect("[", f"expected '[' after '{tok.text}'")
            address = self.nested(tok.pos)
            self.expect("]", "expected ']' after memory address")
            return self.node(tok.pos, "mem", tok.text, address, size=size, signed=signed)
        if tok.text == "str":
            self.expect("(", "expected '(' after 'str'")
            args = [self.nested(tok.pos)]
            if self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                args.append(self.nested(tok.pos))
            self.expect(")", "expected ')' after str() arguments")
            return self.node(tok.pos, "cstr", "str", *args)
        if after.kind == "op" and after.text == "(":
            raise ExpressionError(f"unknown function '{tok.text}'", tok.pos)
        if after.kind == "op" and after.text == "[":
            raise ExpressionError(
                f"unexpected '[' after '{tok.text}' (memory reads are u8[...] .. i64[...])", after.pos)
        return _Node("reg" if is_register(tok.text) else "name", tok.text)


# ---------------------------------------------------------------- evaluation

Fn = Callable[[Env], Value]


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


class _NoEnv:
    """The environment constant folding runs in: anything but arithmetic fails."""

    def register(self, name: str) -> int:
        raise EvaluationError(f"no register {name} here")

    def read_memory(self, address: int, size: int) -> bytes:
        raise EvaluationError("no memory here")

    def lookup(self, name: str) -> Value:
        raise EvaluationError(f"unknown name '{name}'")


_DYNAMIC = frozenset({"reg", "name", "mem", "cstr"})


def _is_constant(node: _Node) -> bool:
    return all(n.kind not in _DYNAMIC for n in node.walk())


def _compile(node: _Node) -> Fn:
    fn = _compile_node(node)
    if node.kind in ("unary", "binary") and _is_constant(node):
        # Fold once; an error (1/0) stays in the closure and surfaces per evaluation.
        try:
            value = fn(_NoEnv())
        except EvaluationError:
            return fn
        return lambda env: value
    return fn


def _compile_node(node: _Node) -> Fn:
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


def _kind(node: _Node) -> str:
    """The static type of a node's value: "int", "str", or "any" (a name's value)."""
    if node.kind in ("str", "cstr"):
        return "str"
    return "any" if node.kind == "name" else "int"


# ---------------------------------------------------------------- public API

@dataclass(frozen=True)
class Expr:
    """A parsed expression; immutable, evaluated by closures compiled once."""

    text: str
    names: frozenset[str]
    _fn: Fn = field(repr=False, compare=False)
    _constant: bool = field(repr=False, compare=False)
    kind: str = field(default="any", compare=False)  # "int" | "str" | "any"
    # What it reads of the stopped thread when that is registers alone: register
    # names and arg0..arg5/retval as written; None when it reads memory.
    reads: frozenset[str] | None = field(default=frozenset(), compare=False)

    def evaluate(self, env: Env) -> Value:
        """The value of the expression in `env`; raises EvaluationError."""
        return self._fn(env)

    def is_constant(self) -> bool:
        """True when the expression reads no register, memory or name."""
        return self._constant

    def constant_value(self) -> Value:
        """The value of a constant expression (is_constant()); raises EvaluationError."""
        return self._fn(_NoEnv())


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> Expr:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise ExpressionError("empty expression", 0)
    tree = _Parser(text).parse()
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


# Format strings live in expr_format.py; re-exported so `expr.parse_format` stays the API.
from .expr_format import Format, parse_format  # noqa: E402,F401
