"""The expression language's parser: tokens -> a small immutable AST, by precedence climbing."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExpressionError
from ..arch.x86_64 import is_register
from .tokenizer import Token, tokenize
from .values import MAX_DEPTH, MAX_NESTING, MEMORY_TYPES, Value

_KEYWORDS = frozenset({"and", "or", "not", "sizeof"})
# Words that can only start a C type name, so `(unsigned long)x` is a cast.
TYPE_WORDS = frozenset({"struct", "union", "enum", "unsigned", "signed", "char", "short", "int", "long",
                        "float", "double", "void", "_Bool", "const", "volatile"})


@dataclass(frozen=True)
class Node:
    kind: str                       # num str reg name unary binary mem cstr, and on typed values:
                                    # member (value: name; signed: '->'), index, deref, addr,
                                    # cast (value: type), sizeof (value: type, or args: (expr,))
    value: Value = 0                # literal value, name, or operator
    args: tuple[Node, ...] = ()
    depth: int = 1
    size: int = 0                   # mem: bytes to read
    signed: bool = False            # mem: sign-extend

    def walk(self) -> list[Node]:
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


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "unexpected end of expression"
    if tok.kind == "str":
        return "unexpected string"
    if tok.kind == "int":
        return f"unexpected number '{tok.text}'"
    if tok.kind == "name":
        return f"unexpected name '{tok.text}'"
    return f"unexpected '{tok.text}'"


class Parser:
    """Precedence climbing over the token list; one frame or three per nesting level."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.nesting = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, op: str, message: str) -> None:
        tok = self.peek()
        if tok.kind != "op" or tok.text != op:
            raise ExpressionError(message, tok.pos)
        self.i += 1

    def node(self, pos: int, kind: str, value: Value, *args: Node,
             size: int = 0, signed: bool = False) -> Node:
        depth = 1 + max((a.depth for a in args), default=0)
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested deeper than {MAX_DEPTH} levels", pos)
        return Node(kind, value, args, depth, size, signed)

    def nest(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ExpressionError(f"expression nested deeper than {MAX_NESTING} levels", pos)

    def parse(self) -> Node:
        tree = self.binary(0)
        if self.peek().kind != "end":
            raise ExpressionError(_describe(self.peek()), self.peek().pos)
        return tree

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind == "op" or (tok.kind == "name" and tok.text in ("and", "or")):
            return tok.text if tok.text in _BINARY_PREC else None
        return None

    def binary(self, min_prec: int) -> Node:
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

    def unary(self) -> Node:
        tok = self.peek()
        if (tok.kind == "op" and tok.text in ("-", "~", "*", "&")) or (tok.kind == "name" and tok.text == "not"):
            self.take()
            self.nest(tok.pos)
            operand = self.unary()
            self.nesting -= 1
            if tok.text in ("*", "&") and operand.kind in ("num", "str"):
                # `2 ** 3` is no power, and a literal has no address to read.
                raise ExpressionError(f"unexpected '{tok.text}'", tok.pos)
            if tok.text == "*":
                return self.node(tok.pos, "deref", "*", operand)
            if tok.text == "&":
                return self.node(tok.pos, "addr", "&", operand)
            return self.node(tok.pos, "unary", tok.text, operand)
        if tok.kind == "name" and tok.text == "sizeof":
            self.take()
            toks, i = self.tokens, self.i
            if (toks[i].text == "(" and toks[i + 1].kind == "name" and toks[i + 2].text == ")"
                    and toks[i + 1].text not in TYPE_WORDS and toks[i + 1].text not in _KEYWORDS
                    and toks[i].kind == toks[i + 2].kind == "op"):
                # `sizeof(x)`: a variable or a typedef, whichever the program has.
                self.i += 3
                return self.node(tok.pos, "sizeof", toks[i + 1].text, signed=True)
            if self.is_type_ahead():
                self.take()
                text = self.type_name()
                return self.node(tok.pos, "sizeof", text)
            self.nest(tok.pos)
            operand = self.unary()
            self.nesting -= 1
            return self.node(tok.pos, "sizeof", "", operand)
        if tok.kind == "op" and tok.text == "(" and self.is_type_ahead():
            self.take()
            text = self.type_name()
            self.nest(tok.pos)
            operand = self.unary()
            self.nesting -= 1
            return self.node(tok.pos, "cast", text, operand)
        return self.postfix(self.primary())

    def is_type_ahead(self) -> bool:
        """Does `(` at the current token open a type name (a cast or sizeof's operand)?

        Type words (`struct`, `unsigned`, ...) decide at once; a plain name is a
        type when stars and `)` follow it (`(req_t *)`), or when `)` and then an
        operand do (`(req_t)rdi`), which no parenthesized expression can be."""
        toks, i = self.tokens, self.i
        if not (toks[i].kind == "op" and toks[i].text == "("):
            return False
        first = toks[i + 1]
        if first.kind != "name" or first.text in _KEYWORDS or "!" in first.text:
            return False
        if first.text in TYPE_WORDS:
            return True
        j = i + 2
        stars = 0
        while toks[j].kind == "op" and toks[j].text == "*":
            stars, j = stars + 1, j + 1
        if not (toks[j].kind == "op" and toks[j].text == ")"):
            return False
        if stars:
            return True
        after = toks[j + 1]
        return (after.kind in ("int", "str") or (after.kind == "name" and after.text not in ("and", "or"))
                or (after.kind == "op" and after.text == "("))

    def type_name(self) -> str:
        """The words and stars of a type up to its `)`, as one normalized spelling."""
        words: list[str] = []
        stars = 0
        while True:
            tok = self.take()
            if tok.kind == "name" and not stars and tok.text not in _KEYWORDS:
                words.append(tok.text)
            elif tok.kind == "op" and tok.text == "*" and words:
                stars += 1
            elif tok.kind == "op" and tok.text == ")" and words:
                return " ".join(words) + (" " + "*" * stars if stars else "")
            else:
                raise ExpressionError(f"{_describe(tok)} in a type name", tok.pos)

    def postfix(self, node: Node) -> Node:
        """`x.m`, `p->m`, `a[i]` after a primary, as often as they come."""
        while True:
            tok = self.peek()
            if tok.kind != "op" or tok.text not in (".", "->", "["):
                return node
            if node.kind in ("num", "str"):
                # `(1).real`, `"x".join`: a literal has no members; nor does Python reach here.
                raise ExpressionError(f"unexpected '{tok.text}'", tok.pos)
            self.take()
            if tok.text == "[":
                index = self.nested(tok.pos)
                self.expect("]", "expected ']' after an index")
                node = self.node(tok.pos, "index", "[]", node, index)
                continue
            member = self.take()
            if member.kind != "name" or member.text in _KEYWORDS or "!" in member.text:
                raise ExpressionError(f"expected a member name after '{tok.text}'", member.pos)
            # The tokenizer keeps `a.b.c` as one name (symbols have dots: `foo.cold`).
            for n, part in enumerate(member.text.split(".")):
                if not part:
                    raise ExpressionError("empty member name", member.pos)
                node = self.node(tok.pos, "member", part, node, signed=(n == 0 and tok.text == "->"))

    def nested(self, pos: int) -> Node:
        self.nest(pos)
        inner = self.binary(0)
        self.nesting -= 1
        return inner

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "int":
            return Node("num", int(tok.text, 0))
        if tok.kind == "str":
            return Node("str", tok.text)
        if tok.kind == "op" and tok.text == "(":
            inner = self.nested(tok.pos)
            self.expect(")", "expected ')'")
            return inner
        if tok.kind == "name" and tok.text not in _KEYWORDS:
            return self.name(tok)
        raise ExpressionError(_describe(tok), tok.pos)

    def name(self, tok: Token) -> Node:
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
        return Node("reg" if is_register(tok.text) else "name", tok.text)
