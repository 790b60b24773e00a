"""The one error tree of instrument, and source locations for recipe errors.

    InstrumentError                 anything instrument raises on purpose
    ├── UsageError                  bad command line (exit 2)
    ├── RecipeError                 a recipe is wrong; carries a Location (exit 2)
    │   ├── RecipeSyntaxError       YAML that does not parse
    │   ├── SchemaError             YAML that does not match recipe.schema.json
    │   ├── ExpressionError         an expression or format string that does not parse
    │   └── SymbolError             an address expression that does not resolve
    ├── TargetError                 the target could not be started or attached (exit 3)
    └── DebuggerError               the backend failed while the session ran
        └── TargetLost              the target vanished under us (RIP)

`RecipeErrors` bundles several RecipeErrors found in one pass, so that
`instrument validate` can print all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_TARGET = 3


@dataclass(frozen=True)
class Location:
    """Where in a recipe file something is; line and col are 1-based."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file

    def shifted(self, columns: int) -> Location:
        """The location `columns` characters further on the same line."""
        return Location(self.file, self.line, self.col + columns)


class InstrumentError(Exception):
    """Base of every error instrument raises on purpose."""

    exit_status = EXIT_USAGE


class UsageError(InstrumentError):
    """The command line is wrong."""


class RecipeError(InstrumentError):
    """A recipe is wrong. Prints as `file:line:col: error: message`."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        if self.location is None:
            return f"error: {self.message}"
        return f"{self.location}: error: {self.message}"


class RecipeSyntaxError(RecipeError):
    """The recipe is not well-formed YAML."""


class SchemaError(RecipeError):
    """The recipe does not match the recipe JSON Schema."""


class ExpressionError(RecipeError):
    """An expression does not parse; `column` is 0-based within the expression text."""

    def __init__(self, message: str, column: int = 0, location: Location | None = None) -> None:
        super().__init__(message, location)
        self.column = column


class SymbolError(RecipeError):
    """An address expression names a symbol or module that does not exist."""


class RecipeErrors(InstrumentError):
    """Several recipe errors found in one pass, in file order."""

    def __init__(self, errors: list[RecipeError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class TargetError(InstrumentError):
    """The target could not be started or attached."""

    exit_status = EXIT_TARGET


class DebuggerError(InstrumentError):
    """The debug backend failed while the session ran."""

    exit_status = EXIT_TARGET


class TargetLost(DebuggerError):
    """The target vanished under us (killed from outside, ptrace error)."""


class EvaluationError(InstrumentError):
    """An expression could not be evaluated at run time (bad memory, division by zero).

    Not a recipe error: it becomes an `error` field of the record being built.
    """
