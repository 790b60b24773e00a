"""Log format strings: literal text with `{expr}` and `{expr:spec}` fields (see instrument.expr)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import EvaluationError, ExpressionError
from .evaluator import parse
from .values import MAX_FORMAT_LENGTH, MAX_FORMAT_WIDTH, Env, Expr, Value


@dataclass(frozen=True)
class Format:
    """A parsed log format string: literal text and `{expr}` / `{expr:spec}` fields."""

    text: str
    names: frozenset[str]
    _parts: tuple[str | tuple[Expr, str], ...] = field(repr=False, compare=False)
    # Set by the compiler when a field names a DWARF variable: reading it needs the thread stopped.
    stopped: bool = field(default=False, compare=False)

    @property
    def fields(self) -> tuple[Expr, ...]:
        """The expressions of the fields, in order."""
        return tuple(p[0] for p in self._parts if not isinstance(p, str))

    @property
    def reads(self) -> frozenset[str] | None:
        """Expr.reads of all its fields together."""
        if self.stopped:
            return None
        out: frozenset[str] = frozenset()
        for expr in self.fields:
            if expr.reads is None:
                return None
            out |= expr.reads
        return out

    def render(self, env: Env) -> str:
        """The text with every field evaluated and formatted; raises EvaluationError."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            expr, spec = part
            value = expr._fn(env)       # not evaluate(): one call less per field, per hit
            try:
                out.append(format(value, spec))
            except (ValueError, TypeError) as e:
                raise EvaluationError(f"cannot format {{{expr.text.strip()}:{spec}}}: {e}") from None
        return "".join(out)


def _scan_field(text: str, start: int) -> tuple[int, int]:
    """(index of the closing '}', index of the spec's ':' or -1) for the field opened before `start`."""
    depth, quote, colon = 0, "", -1
    j = start
    while j < len(text):
        c = text[j]
        if colon >= 0:
            if c == "{":
                raise ExpressionError("nested '{' in a format spec is not supported", j)
            if c == "}":
                return j, colon
        elif quote:
            if c == "\\":
                j += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth = max(0, depth - 1)
        elif c == ":" and depth == 0:
            colon = j
        elif c == "}":
            return j, colon
        j += 1
    raise ExpressionError("unterminated '{' field; write '{{' for a literal brace", start - 1)


def _check_spec(expr: Expr, spec: str, column: int) -> None:
    """Reject at parse time a spec that could never format this field's value."""
    if any(int(run) > MAX_FORMAT_WIDTH for run in re.findall(r"[0-9]+", spec)):
        raise ExpressionError(f"format width above {MAX_FORMAT_WIDTH} in '{spec}'", column)
    samples: tuple[Value, ...] = (0,) if expr.kind == "int" else ("",) if expr.kind == "str" else (0, "")
    for sample in samples:
        try:
            format(sample, spec)
            return
        except (ValueError, TypeError):
            continue
    raise ExpressionError(f"invalid format spec '{spec}'", column)


def _parse_field(text: str, start: int) -> tuple[tuple[Expr, str], int]:
    """Parse the field whose '{' is at start-1; returns ((expr, spec), index after '}')."""
    end, colon = _scan_field(text, start)
    source = text[start: colon if colon >= 0 else end]
    try:
        expr = parse(source)
    except ExpressionError as e:
        raise ExpressionError(e.message, start + e.column) from None
    spec = text[colon + 1: end] if colon >= 0 else ""
    if spec:
        _check_spec(expr, spec, colon + 1)
    return (expr, spec), end + 1


def parse_format(text: str) -> Format:
    """Parse a log format string; columns in errors count from the string's start."""
    if len(text) > MAX_FORMAT_LENGTH:
        raise ExpressionError(f"format string longer than {MAX_FORMAT_LENGTH} characters",
                              MAX_FORMAT_LENGTH)
    parts: list[str | tuple[Expr, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in "{}" and text.startswith(c * 2, i):
            literal.append(c)
            i += 2
        elif c == "{":
            if literal:
                parts.append("".join(literal))
                literal = []
            part, i = _parse_field(text, i + 1)
            parts.append(part)
        elif c == "}":
            raise ExpressionError("single '}' in format string; write '}}' for a literal brace", i)
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    names = frozenset().union(*(p[0].names for p in parts if not isinstance(p, str)))
    return Format(text, names, tuple(parts))
