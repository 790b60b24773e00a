"""The recipe as frozen values: what the YAML said, validated, with no behaviour and no I/O.

Every model object keeps its `path` in the document (("breakpoints", 0)),
so later stages can point errors at a line and column with `Recipe.where`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import Location

Path = tuple[Any, ...]

ACTION_KINDS = (
    "log", "dump", "set", "write", "backtrace", "disassemble", "return",
    "enable", "disable", "detach", "kill", "stop",
)
BREAKPOINT_TYPES = ("soft", "hardware", "memory")
PARAM_TYPES = ("int", "float", "str", "bool")


@dataclass(frozen=True)
class Param:
    name: str
    type: str                      # one of PARAM_TYPES
    default: Any = None
    required: bool = False         # no default: must come from --set
    description: str | None = None
    path: Path = ()


@dataclass(frozen=True)
class Target:
    run: tuple[str, ...] | None = None       # argv, `{param}` fields not yet substituted
    attach: int | str | None = None          # pid, or a "{param}" string
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stdin: str | None = None
    timeout: float | None = None
    follow_forks: bool = False
    path: Path = ("target",)


@dataclass(frozen=True)
class Action:
    """One action: `kind` is one of ACTION_KINDS; `args` is the YAML value as plain data
    (a string, int, None or a dict), e.g. log -> "fmt" or {"message":..., "registers":[...]}."""

    kind: str
    args: Any
    path: Path = ()


@dataclass(frozen=True)
class Breakpoint:
    id: str
    at: str | int                  # an address expression (text) or a YAML integer
    type: str = "soft"             # one of BREAKPOINT_TYPES
    access: str | None = None      # hardware: execute|write|readwrite; memory: write|any
    size: int | None = None        # None: the type's default (SPEC section 3)
    when: str | None = None
    limit: int | None = None       # `once: true` is stored as limit 1
    enabled: bool = True
    actions: tuple[Action, ...] = ()
    on_return: tuple[Action, ...] | None = None
    path: Path = ()
    id_given: bool = True          # False: `id` is its `at:` text (patterns then name each function)
    max_matches: int | None = None  # a symbol pattern's cap; None: DEFAULT_MAX_MATCHES

    @property
    def effective_access(self) -> str | None:
        if self.type == "hardware":
            return self.access or "execute"
        if self.type == "memory":
            return self.access or "any"
        return None

    @property
    def effective_size(self) -> int:
        if self.size is not None:
            return self.size
        if self.type == "hardware":
            return 1 if self.effective_access == "execute" else 8
        return 1


DISPOSITIONS = ("pass", "suppress")


@dataclass(frozen=True)
class SignalHandler:
    """One `signals:` entry: what to do when the signal `key` names is delivered."""

    key: str | int                 # as written: SIGUSR1, usr1, 10, SIGRTMIN+3 (the compiler reads it)
    disposition: str = "pass"      # one of DISPOSITIONS: pass it on to the program, or drop it
    when: str | None = None
    limit: int | None = None
    actions: tuple[Action, ...] = ()
    path: Path = ()


SYSCALL_PHASES = ("entry", "exit", "both")


@dataclass(frozen=True)
class SyscallHandler:
    """One `syscalls:` entry: its key (a name, number or glob), when it runs, its actions."""

    key: str
    on: str = "both"               # one of SYSCALL_PHASES
    when: str | None = None
    limit: int | None = None
    actions: tuple[Action, ...] = ()
    path: Path = ()


@dataclass(frozen=True)
class Recipe:
    version: int
    name: str
    description: str | None = None   # optional (the shipped library's test requires it)
    author: str | None = None
    tags: tuple[str, ...] = ()
    requires: Mapping[str, str] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    target: Target | None = None
    breakpoints: tuple[Breakpoint, ...] = ()
    events: Mapping[str, tuple[Action, ...]] = field(default_factory=dict)
    events_paths: Mapping[str, Path] = field(default_factory=dict)
    crash: tuple[Action, ...] = ()
    signals: tuple[SignalHandler, ...] = ()
    rules: tuple[Mapping[str, Any], ...] = ()   # crash classification rules, as plain data
    syscalls: tuple[SyscallHandler, ...] = ()
    file: str = "<recipe>"         # what errors call the file
    text: str = ""                 # the exact text, for provenance
    sha256: str = ""
    positions: Mapping[Path, Location] = field(default_factory=dict, repr=False, compare=False)
    key_positions: Mapping[Path, Location] = field(default_factory=dict, repr=False, compare=False)

    def where(self, path: Path, *, key: bool = False) -> Location:
        """The location of the value (or, with key=True, the key) at `path`;
        falls back to the nearest enclosing node that has one."""
        table = self.key_positions if key else self.positions
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), Location(self.file, 1, 1))

    def breakpoint(self, bp_id: str) -> Breakpoint | None:
        return next((b for b in self.breakpoints if b.id == bp_id), None)
