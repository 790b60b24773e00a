"""The expression language's shared values: Value, the Env it evaluates in, Expr, and its limits."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Union

from ..errors import EvaluationError

MAX_LENGTH = 2000          # characters in one expression
MAX_FORMAT_LENGTH = 10000  # characters in one format string
MAX_NESTING = 64           # parentheses, brackets and unary operators inside each other
MAX_DEPTH = 100            # AST depth: bounds the closures' recursion at evaluation time
MAX_SHIFT = 1024           # `1 << 10**9` would allocate 125 MB; no register needs more
STR_CAP = 4096             # bytes str(e) reads at most
STR_LIMIT_CAP = 65536      # str(e, n) clamps n to this
MAX_FORMAT_WIDTH = 1000    # `{x:999999999}` would allocate a gigabyte per render

BUILTIN_NAMES: frozenset[str] = frozenset(
    {"arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "retval", "hits"}
)
MEMORY_TYPES: dict[str, tuple[int, bool]] = {
    "u8": (1, False), "u16": (2, False), "u32": (4, False), "u64": (8, False),
    "i8": (1, True), "i16": (2, True), "i32": (4, True), "i64": (8, True),
}

Value = Union[int, str, "Object"]


class Object(ABC):
    """A value with a C type (a variable from debug information: symbols.dwarf_values).

    The evaluator knows nothing of DWARF: it asks the object itself for members,
    elements and its pointee, and for a plain integer (`scalar`) wherever
    arithmetic, comparison, a memory address or a format spec needs one."""

    @property
    @abstractmethod
    def size(self) -> int:
        """sizeof: the size of its type in bytes."""

    @abstractmethod
    def scalar(self) -> int:
        """The value as an integer (an array: its address); raises EvaluationError."""

    @abstractmethod
    def member(self, name: str, arrow: bool) -> Value:
        """`.name` (`->name` with arrow); raises EvaluationError."""

    @abstractmethod
    def index(self, i: int) -> Value:
        """`[i]` of an array or pointer; raises EvaluationError."""

    @abstractmethod
    def deref(self) -> Value:
        """`*x`; raises EvaluationError."""

    @abstractmethod
    def address_of(self) -> Value:
        """`&x`; raises EvaluationError when it is not in memory."""

    @abstractmethod
    def to_json(self, depth: int, length: int) -> Any:
        """A JSON value: structs to `depth` levels, arrays to `length` elements."""

    def __int__(self) -> int:
        return self.scalar()

    def __index__(self) -> int:
        return self.scalar()

    def __bool__(self) -> bool:
        return self.scalar() != 0


class CastType(ABC):
    """A C type named in an expression (`(struct req *)rdi`, `sizeof(int)`)."""

    @property
    @abstractmethod
    def size(self) -> int: ...

    @abstractmethod
    def cast(self, value: Value) -> Value:
        """`value` converted to this type; raises EvaluationError."""


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

    def type_named(self, name: str) -> CastType:
        """A C type by its spelling (`struct req *`, `uint32_t`); raises EvaluationError."""
        ...


Fn = Callable[[Env], Value]


class NoEnv:
    """The environment constant folding runs in: anything but arithmetic fails."""

    def register(self, name: str) -> int:
        raise EvaluationError(f"no register {name} here")

    def read_memory(self, address: int, size: int) -> bytes:
        raise EvaluationError("no memory here")

    def lookup(self, name: str) -> Value:
        raise EvaluationError(f"unknown name '{name}'")

    def type_named(self, name: str) -> CastType:
        raise EvaluationError(f"no type '{name}' here")


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
    # Uses C operators on typed values (`.` `->` `[]` `*` `&` casts, sizeof): debug information.
    typed: bool = field(default=False, compare=False)

    def evaluate(self, env: Env) -> Value:
        """The value of the expression in `env`; raises EvaluationError."""
        return self._fn(env)

    def is_constant(self) -> bool:
        """True when the expression reads no register, memory or name."""
        return self._constant

    def constant_value(self) -> Value:
        """The value of a constant expression (is_constant()); raises EvaluationError."""
        return self._fn(NoEnv())
