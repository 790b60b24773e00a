"""Parse recipe YAML into plain data plus the 1-based line/col of every value and key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import Location, RecipeError, RecipeErrors, RecipeSyntaxError

Path = tuple[Any, ...]

_CORE = "tag:yaml.org,2002:"
# Scalar tags we turn into plain values. `timestamp` and `value` ("=") are
# what YAML 1.1 silently resolves some plain scalars to; a recipe means the
# text, so they stay strings. Every other tag (!!python/..., !!binary, !foo)
# is refused: a recipe is data and must never name a Python constructor.
_SCALAR_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp", "value"))

# Aliases can expand exponentially ("billion laughs"); recipes come from
# strangers, so cap the number of values a document may expand to.
MAX_NODES = 100_000


@dataclass(frozen=True)
class Source:
    """A parsed recipe document: plain data and where each part of it was written."""

    data: dict[str, Any]
    positions: dict[Path, Location]       # path -> location of the value
    key_positions: dict[Path, Location]   # path -> location of the mapping key naming it
    file: str
    text: str


def parse_source(text: str, file: str = "<recipe>") -> Source:
    """Parse YAML `text` into a Source; raises RecipeErrors of RecipeSyntaxErrors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        raise RecipeErrors(_marked_errors(e, file)) from None
    except yaml.YAMLError as e:
        raise RecipeErrors([_reader_error(e, text, file)]) from None
    if root is None:
        raise RecipeErrors([RecipeSyntaxError("the recipe is empty", Location(file, 1, 1))])
    builder = _Builder(file)
    if not isinstance(root, MappingNode) or root.tag != _CORE + "map":
        raise RecipeErrors([RecipeSyntaxError(
            "a recipe must be a mapping (version: 1, name: ..., ...) at top level",
            builder.where(root))])
    data = builder.build(root, ())
    if builder.errors:
        raise RecipeErrors(sorted(builder.errors, key=_order))
    return Source(data, builder.positions, builder.key_positions, file, text)


def _order(e: RecipeError) -> tuple[int, int]:
    loc = e.location
    return (loc.line, loc.col) if loc else (0, 0)


class RecipeNote(RecipeSyntaxError):
    """A second place an error involves, printed as `file:line:col: note: ...` after it
    (where an unclosed bracket or quote was opened, as gcc points at the `{` it matched)."""

    def __str__(self) -> str:
        return f"{self.location}: note: {self.message}" if self.location else f"note: {self.message}"


def _marked_errors(e: yaml.MarkedYAMLError, file: str) -> list[RecipeError]:
    """The error at PyYAML's problem mark, then a note at its context mark: a missing `]`
    is found at the end of the file, but the `[` it should close is the line to fix."""
    error = _marked_error(e, file)
    mark, context = e.context_mark, e.context or ""
    # Only constructs that are closed by a character: a block mapping's "start" is
    # just where the enclosing indentation began, which says nothing new.
    unclosed = any(kind in context for kind in ("flow sequence", "flow mapping", "quoted scalar"))
    if mark is None or e.problem_mark is None or mark is e.problem_mark or not unclosed:
        return [error]
    what = context.split(" ", 2)[-1]                  # "while parsing a flow sequence" -> "a flow sequence"
    what = "the " + what[2:] if what.startswith("a ") else what
    return [error, RecipeNote(f"{what} starts here", Location(file, mark.line + 1, mark.column + 1))]


def _marked_error(e: yaml.MarkedYAMLError, file: str) -> RecipeSyntaxError:
    mark = e.problem_mark or e.context_mark
    loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
    problem = e.problem or "YAML syntax error"
    if e.context and e.context.startswith("expected a single document"):
        problem = "a recipe file holds exactly one YAML document (found a second '---')"
    elif "'\\t'" in problem:
        problem += " (YAML indents with spaces; tabs are not allowed)"
    elif e.context:
        context = e.context
        if e.context_mark is not None and e.context_mark is not mark:
            context += f" started at line {e.context_mark.line + 1}"
        problem = f"{problem} ({context})"
    return RecipeSyntaxError(f"YAML syntax: {problem}", loc)


def _reader_error(e: yaml.YAMLError, text: str, file: str) -> RecipeSyntaxError:
    # ReaderError (a control character in the text) has a character offset,
    # not a mark.
    position = getattr(e, "position", None)
    if not isinstance(position, int):
        return RecipeSyntaxError(f"YAML syntax: {e}", Location(file))
    before = text[:position]
    line = before.count("\n") + 1
    col = position - (before.rfind("\n") + 1) + 1
    char = getattr(e, "character", "?")
    code = ord(char) if isinstance(char, str) and char else 0
    return RecipeSyntaxError(f"YAML syntax: unacceptable character #x{code:04x}", Location(file, line, col))


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Builder:
    """Turns a composed node tree into plain data, recording positions as it goes."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path, Location] = {}
        self.key_positions: dict[Path, Location] = {}
        self.errors: list[RecipeError] = []
        self._count = 0
        self._active: set[int] = set()
        # Only its scalar constructors are used, on nodes whose tags we
        # checked; they need no loader state.
        self._ctor = yaml.SafeLoader("")

    def where(self, node: Node) -> Location:
        mark = node.start_mark
        col = mark.column + 1
        # Point inside the quote, so a 0-based column within the string
        # (an expression parser's) can be added to it directly.
        if isinstance(node, ScalarNode) and node.style in ("'", '"'):
            col += 1
        return Location(self.file, mark.line + 1, col)

    def fail(self, message: str, node: Node) -> None:
        self.errors.append(RecipeSyntaxError(message, self.where(node)))

    def build(self, node: Node, path: Path) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            self.fail(f"the recipe expands to more than {MAX_NODES} values (aliases?)", node)
            raise RecipeErrors(self.errors)
        self.positions[path] = self.where(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            self.fail("a recursive alias (*anchor inside its own &anchor) is not allowed", node)
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            assert isinstance(node, MappingNode)     # composed nodes are scalars, sequences or mappings
            return self._mapping(node, path)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.fail(f"tag '{_tag_name(node.tag)}' is not allowed: a recipe is plain data", node)
            return None
        kind = node.tag[len(_CORE):]
        if kind in ("str", "timestamp", "value"):
            return node.value
        constructor = {"int": self._ctor.construct_yaml_int, "float": self._ctor.construct_yaml_float,
                       "bool": self._ctor.construct_yaml_bool, "null": self._ctor.construct_yaml_null}[kind]
        return constructor(node)

    def _sequence(self, node: SequenceNode, path: Path) -> list[Any]:
        if node.tag != _CORE + "seq":
            self.fail(f"tag '{_tag_name(node.tag)}' is not allowed: a recipe is plain data", node)
            return []
        return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        if node.tag != _CORE + "map":
            self.fail(f"tag '{_tag_name(node.tag)}' is not allowed: a recipe is plain data", node)
            return {}
        out: dict[str, Any] = {}
        first_seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key is None:
                continue
            key_loc = self.where(key_node)
            if key in first_seen:
                # YAML parsers keep the last of duplicate keys silently;
                # in a recipe that hides a mistake, so it is an error.
                self.fail(f"duplicate key '{key}' (first given at line {first_seen[key].line})", key_node)
                continue
            first_seen[key] = key_loc
            self.key_positions[path + (key,)] = key_loc
            out[key] = self.build(value_node, path + (key,))
        return out

    def _key(self, node: Node) -> str | None:
        if not isinstance(node, ScalarNode):
            self.fail("a mapping key must be a plain name, not a list or mapping", node)
            return None
        if node.tag == _CORE + "merge":
            self.fail("merge keys ('<<') are not supported in recipes", node)
            return None
        if node.tag not in _SCALAR_TAGS:
            self.fail(f"tag '{_tag_name(node.tag)}' is not allowed: a recipe is plain data", node)
            return None
        # Keys are names: keep their text, so YAML 1.1's `no:`/`on:` stay
        # strings instead of turning into booleans.
        return str(node.value)
