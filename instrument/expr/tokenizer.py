"""The expression language's tokenizer: text -> tokens (numbers, strings, names, operators)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ExpressionError

@dataclass(frozen=True)
class Token:
    kind: str      # "int" | "str" | "name" | "op" | "end"
    text: str      # the source text (for "str": the decoded value)
    pos: int


_SPACE = re.compile(r"[ \t\r\n]+")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_]*")
_QUALIFIED = re.compile(r"[A-Za-z_][A-Za-z0-9_.+\-]*!(?!=)")
# `::` joins C++ scopes (`ns::Klass::method`); a lone `:` is never part of a name.
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.@$]*(?:::[A-Za-z_~][A-Za-z0-9_.@$]*)*")
_OPERATORS = ("<<", ">>", "<=", ">=", "==", "!=", "->", "+", "-", "*", "/", "%",
              "&", "|", "^", "~", "(", ")", "[", "]", ",", "<", ">", ".")
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


def _operator(text: str, pos: int) -> Token:
    if text[pos: pos + 2] in ("&&", "||"):
        pair = text[pos: pos + 2]
        raise ExpressionError(f"unexpected '{pair}'{_HINTS[pair]}", pos)
    for op in _OPERATORS:
        if text.startswith(op, pos):
            return Token("op", op, pos)
    c = text[pos]
    if c.isprintable() and c.isascii():
        raise ExpressionError(f"unexpected '{c}'{_HINTS.get(c, '')}", pos)
    raise ExpressionError(f"unexpected character {c!r}", pos)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
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
            tokens.append(Token("int", m.group(), pos))
        elif m := _QUALIFIED.match(text, pos):
            sym = _IDENT.match(text, m.end())
            if sym is None:
                raise ExpressionError("expected a symbol name after '!'", m.end())
            _reject_dunder(sym.group(), sym.start())
            tokens.append(Token("name", text[pos: sym.end()], pos))
            m = sym
        elif m := _IDENT.match(text, pos):
            _reject_dunder(m.group(), pos)
            tokens.append(Token("name", m.group(), pos))
        elif c in "\"'":
            value, end = _string(text, pos)
            tokens.append(Token("str", value, pos))
            pos = end
            continue
        else:
            tokens.append(_operator(text, pos))
            pos += len(tokens[-1].text)
            continue
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens
