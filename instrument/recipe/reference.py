"""The recipe reference (docs/recipe-reference.md), generated from the recipe JSON Schema so it cannot drift."""

from __future__ import annotations

from typing import Any

import yaml

REGENERATE = "instrument schema recipe --markdown > docs/recipe-reference.md"
Schema = dict[str, Any]


def markdown_reference(schema: Schema) -> str:
    """The whole reference page: top-level keys, then one section per definition."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    out = [
        "# Recipe reference",
        "",
        f"<!-- Generated from recipe.schema.json by `{REGENERATE}`. Do not edit by hand: "
        "a test fails when this page and the schema disagree. -->",
        "",
        _text(schema.get("description", "")),
        "",
        f"Format: {schema.get('title', 'recipe')}. Required keys: "
        + ", ".join(f"`{k}`" for k in schema.get("required", [])) + ".",
        "",
        "## Top-level keys",
        "",
        *_properties_table(schema),
        "",
    ]
    for number, example in enumerate(schema.get("examples", []), start=1):
        out += [f"Example {number}:", "", "```yaml", _yaml_block(example), "```", ""]
    out += _events_section(schema)
    for key, node in schema.get("properties", {}).items():
        if key != "events" and ("properties" in node or isinstance(node.get("additionalProperties"), dict)):
            out += _def_section(f"`{key}`", node)
    for name, node in defs.items():
        out += _def_section(name, node)
    out += [PATTERNS_SECTION, TRACE_SECTION]
    return "\n".join(out).rstrip("\n") + "\n"


# Behaviour the schema cannot say: what a pattern in `at:` does, and what `trace` writes.
PATTERNS_SECTION = """## Symbol patterns

A breakpoint's `at:` with `*` or `?` in it (and no spaces) is a symbol pattern: a shell-style
glob (`*`, `?`, `[abc]`) over function names, with an optional `MODULE!` in front that may be
a glob too. It becomes one breakpoint per function it matches.

| `at:` | matches |
|---|---|
| `hit*` | the program's own functions whose names start with `hit` |
| `libc.so.6!str*` | libc's functions whose names start with `str` (`libc!str*` too) |
| `*!malloc` | `malloc` in every module that defines one |
| `libz.so*!inflate*` | the `inflate*` functions of every module whose file name matches `libz.so*` |
| `ns::K::*` | the methods of C++ class `ns::K` (demangled names, with or without parameters) |

- Functions are deduplicated by address: aliases (`__libc_malloc` and `malloc`) arm once, and
  so do indirect functions that pick the same implementation (glibc's `memcpy` and `memmove`).
  Indirect functions (`strlen`, `strcpy`) break in the implementation the loader picked.
- Each function is a breakpoint of its own: its id is the function (`libc.so.6!strlen`; `hit` for
  the program's), or `ID[function]` when the breakpoint has an `id:`; `limit`, `once` and `hits`
  count per function; each hit's `symbol` names it; `enable:`/`disable:` of the pattern's id
  switch all of its functions.
- Where the module's file can be read before the run (the program; a library in LD_LIBRARY_PATH
  or the system's library folders), `validate`, `explain` and `run` check the pattern against
  it: matching no function is an error at its line, and so is matching more than `max_matches`
  (default 1000). `explain` lists what it expands to.
- Otherwise the pattern is expanded when a module it names loads (its LOAD_DLL event). If none
  does, or none of its functions match, the `summary` record's `errors` say so.
- Patterns make soft and hardware execute breakpoints only (hardware: at most 4 functions).
  An expression that multiplies keeps spaces around `*` (`hit * 2`).
"""

TRACE_SECTION = """## Recipes from the command line: `instrument trace`

`instrument trace` writes a recipe from its flags and runs it as `instrument run` runs a file:
same engine, same records.

```sh
instrument trace -i 'libc.so.6!open*' -i malloc --ret -- ./app
```

| flag | in the recipe |
|---|---|
| `-i PLACE` (repeatable) | a breakpoint `at: PLACE` |
| `-i 'PLACE: FORMAT'` | ... with `actions: [{log: FORMAT}]` |
| `--args N` (default 3) | `log: "arg0={arg0:#x} ..."`, where no FORMAT is given |
| `--ret` | `on_return: []`: a `return` record per call, with `retval` |
| `--backtrace [DEPTH]` | `backtrace: {depth: DEPTH}` (default 16) |
| `--limit N` | `limit: N` |
| `--hardware` | `type: hardware` |
| `--max-matches N` | `max_matches: N` |
| `-- COMMAND`, `--pid PID`, `--timeout S`, `--follow-forks` | `target:` |

`--print-recipe` prints the recipe instead of running it; `--save FILE` writes it to FILE and
runs it, and `instrument run FILE` then gives the same records.
"""


# -- sections -------------------------------------------------------------------------------

def _events_section(schema: Schema) -> list[str]:
    events = schema.get("properties", {}).get("events")
    if not events:
        return []
    lines = ["## `events`", "", _text(events.get("description", "")), "",
             "| key | runs on |", "|---|---|"]
    for key, node in events.get("properties", {}).items():
        lines.append(f"| `{key}` | {_cell(node.get('description', ''))} |")
    lines.append("")
    return lines


def _def_section(name: str, node: Schema) -> list[str]:
    lines = [f"## {name}", "", _text(node.get("description", "")), ""]
    kind = _type_text(node, link=False)
    if kind:
        lines += [f"Type: {kind}.", ""]
    if "then" in node and "enum" in node["then"] and node.get("if", {}).get("type") == "string":
        lines += ["As a bare string, one of: " + ", ".join(f"`{v}`" for v in node["then"]["enum"]) + ".", ""]
    table = _properties_table(node)
    if table:
        required = _required(node)
        if required:
            lines += ["Required: " + ", ".join(f"`{k}`" for k in required) + ".", ""]
        lines += table + [""]
    if "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        lines += ["Each entry: " + _type_text(node["additionalProperties"]) + ".", ""]
    lines += _constraints(node)
    examples = node.get("examples", [])
    if examples:
        lines += ["Examples:", ""]
        for example in examples:
            lines += ["```yaml", _yaml_block(example), "```", ""]
    return lines


def _constraints(node: Schema) -> list[str]:
    """The `allOf: [{if: type == X, then: ...}]` rules of a breakpoint, as sentences."""
    lines = []
    for rule in node.get("allOf", []):
        applies = _condition_text(rule.get("if", {}))
        then = rule.get("then", {}).get("properties", {})
        parts = []
        for key, sub in then.items():
            if "enum" in sub:
                parts.append(f"`{key}` is one of " + ", ".join(f"`{v}`" for v in sub["enum"]))
            elif sub.get("not") == {}:
                parts.append(f"`{key}` is not allowed")
        if parts:
            lines.append(f"- {applies.rstrip('.')}: " + "; ".join(parts) + ".")
    return lines + [""] if lines else []


def _condition_text(cond: Schema) -> str:
    """The description of the `type` test in an `if:`, looking inside anyOf branches too."""
    for branch in [cond, *cond.get("anyOf", [])]:
        text = branch.get("properties", {}).get("type", {}).get("description")
        if text:
            return str(text)
    return "When the condition holds"


# -- tables ---------------------------------------------------------------------------------

def _properties(node: Schema) -> dict[str, Schema]:
    """A node's keys: its own `properties`, or those of its object branch (if/then/else)."""
    if "properties" in node:
        return dict(node["properties"])
    for branch in ("else", "then"):
        props = node.get(branch, {}).get("properties")
        if props:
            return dict(props)
    return {}


def _required(node: Schema) -> list[str]:
    return list(node.get("required", []))


def _properties_table(node: Schema) -> list[str]:
    props = _properties(node)
    if not props:
        return []
    required = set(_required(node))
    lines = ["| key | type | description |", "|---|---|---|"]
    for key, sub in props.items():
        desc = _cell(sub.get("description", ""))
        if key in required:
            desc = "**Required.** " + desc
        if "minimum" in sub and "maximum" in sub:
            desc += f" From {sub['minimum']} to {sub['maximum']}."
        elif "minimum" in sub:
            desc += f" At least {sub['minimum']}."
        elif "maximum" in sub:
            desc += f" At most {sub['maximum']}."
        if "default" in sub:
            desc += f" Default: `{_inline(sub['default'])}`."
        if sub.get("examples") and "$ref" not in sub:
            desc += f" Example: `{_inline(sub['examples'][0])}`."
        lines.append(f"| `{key}` | {_type_text(sub)} | {desc} |")
    return lines


def _type_text(node: Schema, link: bool = True) -> str:
    if "$ref" in node:
        target = node["$ref"].rsplit("/", 1)[-1]
        return f"[{target}](#{target})" if link else target
    if "const" in node:
        return f"`{_inline(node['const'])}`"
    if "enum" in node:
        return " \\| ".join(f"`{_inline(v)}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        text = " or ".join(kind)
    else:
        text = kind or ""
    if kind == "array" and isinstance(node.get("items"), dict):
        text = f"array of {_type_text(node['items'], link)}"
    return text


# -- text helpers ---------------------------------------------------------------------------

def _text(text: str) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    # A `|` inside a table cell ends the cell in every Markdown dialect; escape it.
    return _text(text).replace("|", "\\|")


def _inline(value: Any) -> str:
    if isinstance(value, str):
        return value
    dumped: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return dumped.strip().removesuffix("...").strip().replace("|", "\\|")


def _yaml_block(value: Any) -> str:
    if not isinstance(value, (dict, list)):
        return _inline(value)
    dumped: str = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=100)
    return dumped.rstrip("\n")
