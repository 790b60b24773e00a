"""The import graph of instrument/ against the layer order the README writes down.

Every module under instrument/ is parsed with `ast` (never imported), and every
import in it counts: at the top, inside a function, under `if TYPE_CHECKING:`.
The check fails on any circle between modules, on any import from a lower floor
to a higher one, on a module that sits on no floor, and on a "never imports"
rule of the README broken. It reports every violation at once, so one run shows
the whole list.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "instrument"
README = ROOT / "README.md"

_FLOOR = re.compile(r"^- \*\*(\d+)\*\* (.*)$")
_NEVER = re.compile(r"^- `(instrument[\w.]*)` never imports `(instrument[\w.]*)`")
_NAME = re.compile(r"`(instrument[\w.]*)`")


@dataclass(frozen=True)
class Import:
    source: str      # the importing module
    target: str      # the imported module (a module of instrument/, never an outside one)
    line: int


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## How it works\n", 1)[1]
    return section.split("\n## ", 1)[0]


def readme_layers() -> dict[str, int]:
    """Module or package name -> floor, from the README's list `- **N** `name` ... — words`."""
    floors: dict[str, int] = {}
    for line in readme_section().splitlines():
        m = _FLOOR.match(line)
        if m:
            names = _NAME.findall(m.group(2).split(" — ", 1)[0])
            assert names, f"README floor {m.group(1)} names no module: {line!r}"
            for name in names:
                assert name not in floors, f"README puts {name} on two floors"
                floors[name] = int(m.group(1))
    return floors


def readme_never_rules() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for line in readme_section().splitlines() if (m := _NEVER.match(line))]


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py under instrument/."""
    out: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _base(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name `from <level dots><name> import ...` means inside `module`."""
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join(package + ([name] if name else []))


def _known(name: str, modules: set[str]) -> str | None:
    """The module of instrument/ that `name` is, or the closest enclosing one."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(target: str | None, line: int) -> None:
        if target is not None and target != module:
            found.append(Import(module, target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "instrument":
                    add(_known(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node.level, node.module)
            if base.split(".")[0] != "instrument":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # `from pkg import name`: the submodule when `name` is one, else pkg itself.
                add(sub if sub in modules else _known(base, modules), node.lineno)
    return found


def layer_of(module: str, floors: dict[str, int]) -> int | None:
    """The floor of the longest README name that is `module` or a package holding it.
    The package root `instrument` holds only itself: it is not every module's floor."""
    best: tuple[int, int] | None = None
    for name, floor in floors.items():
        inside = module == name or (name != "instrument" and module.startswith(name + "."))
        if inside and (best is None or len(name) > best[0]):
            best = (len(name), floor)
    return None if best is None else best[1]


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out)


def violations() -> list[str]:
    floors = readme_layers()
    never = readme_never_rules()
    files = module_files()
    modules = set(files)
    # One edge per import line: `from .x import a, b` is one import of x.
    edges = sorted({imp for name, path in files.items() for imp in imports_of(name, path, modules)},
                   key=lambda i: (i.source, i.line, i.target))
    problems: list[str] = []

    for name in sorted(modules):
        if layer_of(name, floors) is None:
            problems.append(f"{name}: on no floor of the README's layer list")

    for imp in edges:
        low, high = layer_of(imp.source, floors), layer_of(imp.target, floors)
        if low is not None and high is not None and high > low:
            problems.append(f"upward: {imp.source} (floor {low}) imports {imp.target} (floor {high}), "
                            f"line {imp.line}")
        for who, what in never:
            inside = imp.source == who or imp.source.startswith(who + ".")
            if inside and (imp.target == what or imp.target.startswith(what + ".")):
                problems.append(f"forbidden: {imp.source} imports {imp.target}, line {imp.line} "
                                f"({who} never imports {what})")

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in edges:
        graph[imp.source].add(imp.target)
    for component in _circles(graph):
        members = set(component)
        ties = sorted({f"{i.source} -> {i.target} (line {i.line})" for i in edges
                       if i.source in members and i.target in members})
        problems.append("circle: " + " <-> ".join(component) + "\n      " + "\n      ".join(ties))
    return problems


def test_readme_lists_the_layers() -> None:
    floors = readme_layers()
    assert floors["instrument.cli"] > floors["instrument.report"] > floors["instrument.engine"]
    assert floors["instrument.engine"] > floors["instrument.backend"] > floors["instrument.expr"]
    assert floors["instrument.errors"] == 0 and floors["instrument.version"] == 0


def test_imports_follow_the_layers_without_circles() -> None:
    problems = violations()
    assert not problems, f"{len(problems)} import violation(s):\n  " + "\n  ".join(problems)


# -- the checker checks: small graphs it must judge right -----------------------

def test_relative_and_submodule_imports_resolve(tmp_path: Path) -> None:
    pkg = tmp_path / "instrument"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import errors, __version__\n"
        "if TYPE_CHECKING:\n    from ..sub import other\n"
        "def f():\n    import instrument.errors\n")
    (pkg / "sub" / "other.py").write_text("")
    (pkg / "errors.py").write_text("")
    modules = {"instrument", "instrument.sub", "instrument.sub.leaf", "instrument.sub.other",
               "instrument.errors"}
    leaf = {(i.target, i.line) for i in imports_of("instrument.sub.leaf", pkg / "sub" / "leaf.py", modules)}
    assert leaf == {("instrument.errors", 2), ("instrument", 2), ("instrument.sub.other", 4),
                    ("instrument.errors", 6)}
    sub = {i.target for i in imports_of("instrument.sub", pkg / "sub" / "__init__.py", modules)}
    assert sub == {"instrument.sub.leaf"}


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _circles(graph) == [["a", "b", "c"]]


def test_floors_of_packages_and_the_root() -> None:
    floors = {"instrument": 7, "instrument.engine": 4, "instrument.engine.special": 2}
    assert layer_of("instrument", floors) == 7
    assert layer_of("instrument.engine.loop", floors) == 4
    assert layer_of("instrument.engine.special.x", floors) == 2
    assert layer_of("instrument.other", floors) is None
