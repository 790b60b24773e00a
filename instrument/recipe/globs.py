"""The syntax of a symbol pattern in a breakpoint's `at:` (`libc.so.6!str*`, `*!malloc`, `hit*`, `ns::K::*`).

A pattern is an `at:` text with `*` or `?` in it and no spaces: shell-style
globs (`fnmatch`: `*`, `?`, `[abc]`) over function names, and optionally over
module names before the `!`. Without a module part it names the program's own
functions. Matching them against symbols is the compiler's work
(instrument/compiler/patterns.py); this module only says what was written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GLOB_CHARS = frozenset("*?")
# No spaces (`hit * 2` stays an expression), no `{param}` fields left unsubstituted.
_PATTERN = re.compile(r"(?:(?P<module>[^!\s{}]+)!)?(?P<function>[^!\s{}]+)")


@dataclass(frozen=True)
class SymbolPattern:
    """`module!function` as written; `module` None: the program's own functions."""

    text: str
    module: str | None
    function: str

    @property
    def module_is_glob(self) -> bool:
        return self.module is not None and has_glob(self.module)

    @property
    def is_program(self) -> bool:
        """Names the main program's functions (no module part)."""
        return self.module is None


def has_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def parse_pattern(at: object) -> SymbolPattern | None:
    """The pattern an `at:` value spells, or None for an address expression (or an integer)."""
    if not isinstance(at, str):
        return None
    text = at.strip()
    if not has_glob(text):
        return None
    m = _PATTERN.fullmatch(text)
    if m is None:
        return None
    return SymbolPattern(text, m.group("module"), m.group("function"))


def is_pattern(at: object) -> bool:
    return parse_pattern(at) is not None
