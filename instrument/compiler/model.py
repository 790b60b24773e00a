"""The compiler's output as frozen values: the Plan the engine runs (target, breakpoints, handler table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..actions import CompiledAction
from ..expr import Expr
from ..recipe.checks import resolve_output_path
from ..recipe.model import Recipe
from .patterns import PatternSet
from .table import Handler, HandlerTable

if TYPE_CHECKING:
    # for start-up speed: the rules are parsed only for a recipe that has some
    from ..analysis.classify import Rule


@dataclass(frozen=True)
class BreakpointPlan:
    id: str
    type: str                                # soft | hardware | memory
    at: Expr
    module: str | None                       # the `mod` of `mod!sym`: armed when it loads
    static_address: int | None               # link-time address when known without a process
    access: str | None
    size: int
    when: Expr | None
    limit: int | None
    enabled: bool
    actions: tuple[CompiledAction, ...]
    on_return: tuple[CompiledAction, ...] | None
    line: int
    # Its hits are reported without stopping the thread (compiler/sampling.py); chosen
    # for a backend's capabilities, so False until Plan.sampling_chosen.
    sampled: bool = False
    # A sampled soft breakpoint stops as an int3 for its first `sample_after` hits at an
    # address and becomes a uprobe there at the stop of the last (compiler/sampling.py,
    # SAMPLE_AFTER: a uprobe costs more to close than a few stops); 0: a uprobe at once.
    sample_after: int = 0
    # What explain should say of where it lands (a source line without code: the next one).
    note: str | None = None


@dataclass(frozen=True)
class TargetPlan:
    argv: tuple[str, ...] | None
    attach: int | None
    env: dict[str, str] | None
    cwd: str | None
    stdin: str | None
    timeout: float | None
    follow_forks: bool


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    params: dict[str, Any]
    target: TargetPlan
    breakpoints: tuple[BreakpointPlan, ...]
    table: HandlerTable
    rules: tuple[Rule, ...] = ()             # the recipe's own crash classification rules
    patterns: PatternSet = PatternSet(())    # symbol-pattern breakpoints, expanded as modules load
    # Whether BreakpointPlan.sampled was chosen for a backend (compiled with its
    # capabilities, or compiler.sampling.choose_sampled); the engine chooses, by the
    # compiler's rule, for a plan that was compiled without one in view.
    sampling_chosen: bool = False
    # How an action's output file name becomes a path in the run's output folder
    # (`dump: {file:}`): never outside it (recipe.checks). The engine gets the rule
    # from the plan, as it gets the actions, and never reads recipes itself.
    output_path: Callable[[str | Path, str], Path] = resolve_output_path
    # Whether the recipe names DWARF variables (CompileContext.uses_variables): then a
    # name is looked up among the stopped frame's locals, parameters and typed globals
    # before the symbol tables; otherwise names are symbols alone and no DWARF is read.
    variables: bool = False

    @property
    def crash(self) -> Handler | None:
        """The `crash:` handler (HandlerTable.crash)."""
        return self.table.crash
