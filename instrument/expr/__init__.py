"""The safe expression language of recipes: tokenizer, parser, closure compiler, format strings.

One way down: format -> evaluator -> parser -> tokenizer, and all of them ->
values (Value, Env, Expr, the limits). This package re-exports the public names.

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

from .evaluator import SOURCE_LINE, parse, read_c_string, source_line
from .format import Format, parse_format
from .values import (BUILTIN_NAMES, MAX_DEPTH, MAX_FORMAT_LENGTH, MAX_FORMAT_WIDTH, MAX_LENGTH, MAX_NESTING,
                     MAX_SHIFT, MEMORY_TYPES, STR_CAP, STR_LIMIT_CAP, Env, Expr, Fn, Value)

__all__ = [
    "BUILTIN_NAMES", "MAX_DEPTH", "MAX_FORMAT_LENGTH", "MAX_FORMAT_WIDTH", "MAX_LENGTH", "MAX_NESTING",
    "MAX_SHIFT", "MEMORY_TYPES", "SOURCE_LINE", "STR_CAP", "STR_LIMIT_CAP",
    "Env", "Expr", "Fn", "Format", "Value", "parse", "parse_format", "read_c_string", "source_line",
]
