"""Crash classification as data: rules.yaml (plus --rules files) evaluated in order over a crash record."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ..errors import UsageError
from .signature import stack_hash

# Most severe first (SPEC section 6); --fail-on compares positions in this tuple.
CLASSES = ("EXPLOITABLE", "PROBABLY_EXPLOITABLE", "PROBABLY_NOT_EXPLOITABLE", "NOT_EXPLOITABLE", "UNKNOWN")
NEAR_NULL = 64 << 10        # the first 64 KiB: a NULL pointer plus a field or array offset
STACK_REACH = 8 << 20       # the default stack rlimit: a pc this close to rsp is on the stack
# Prefixes capstone prints before the mnemonic that matters (CET's notrack/bnd, rep, lock).
_PREFIXES = frozenset({"bnd", "notrack", "lock", "rep", "repe", "repz", "repne", "repnz", "data16", "addr32"})
_FIELD = re.compile(r"\{(\w+)\}")

_LIST_KEYS = ("signal", "exception", "access", "check", "mnemonic", "sanitizer", "sanitizer_access")
_BOOL_KEYS = ("near_null", "pc_near_null", "fault_at_pc", "pc_in_stack", "frames_unknown", "sent")

_CONDITION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{k: {"type": "array", "items": {"type": ["string", "null"]}} for k in _LIST_KEYS},
        **{k: {"type": "boolean"} for k in _BOOL_KEYS},
        "instruction": {"type": "string"},
        "in_frames": {"type": "array", "items": {"type": "string"}},
        "any": {"type": "array", "items": {"$ref": "#/definitions/condition"}},
        "not": {"$ref": "#/definitions/condition"},
    },
}
RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "rules"],
    "additionalProperties": False,
    "definitions": {"condition": _CONDITION},
    "properties": {
        "version": {"const": 1},
        "rules": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "class", "when"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": r"^[A-Za-z][\w.-]*$"},
                "class": {"enum": list(CLASSES)},
                "description": {"type": "string"},
                "casr": {"type": "string"},
                "when": {"$ref": "#/definitions/condition"},
            },
        }},
    },
}


@dataclass(frozen=True)
class Rule:
    id: str
    cls: str
    description: str
    when: Mapping[str, Any]
    casr: str | None = None      # CASR's class for the same crash (a {field} template)


def _parse(text: str, source: str, validate: bool = True) -> list[Rule]:
    try:
        # libyaml's loader where PyYAML has it: the shipped rules load 10x faster (25 ms -> 2).
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise UsageError(f"{source}: not valid YAML: {e}") from e
    return parse_rules(data, source, validate)


def parse_rules(data: Any, source: str, validate: bool = True) -> list[Rule]:
    """Rules from plain data ({"version": 1, "rules": [...]}); raises UsageError naming `source`.
    `validate` False skips the schema (the shipped rules, which a test validates): importing
    jsonschema costs 70-150 ms of every triage run's start-up here."""
    if validate:
        import jsonschema  # type: ignore[import-untyped, unused-ignore]  # where first used, for start-up speed

        errors = sorted(jsonschema.Draft7Validator(RULES_SCHEMA).iter_errors(data), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(top)"
            raise UsageError(f"{source}: {where}: {errors[0].message}")
    rules = [Rule(r["id"], r["class"], r.get("description", r["id"]), r["when"], r.get("casr"))
             for r in data["rules"]]
    for rule in rules:
        if "instruction" in rule.when:
            _regex(rule.when["instruction"], f"{source}: rule {rule.id}")
    return rules


def _regex(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise UsageError(f"{where}: bad instruction pattern: {e}") from e


@functools.lru_cache(maxsize=1)
def default_rules() -> tuple[Rule, ...]:
    """The rules shipped with the package (instrument/analysis/rules.yaml)."""
    text = (resources.files("instrument.analysis") / "rules.yaml").read_text(encoding="utf-8")
    return tuple(_parse(text, "rules.yaml", validate=False))   # tests/unit: it passes the schema


def load_rules(extra: Iterable[str] = (), first: Iterable[Rule] = ()) -> tuple[Rule, ...]:
    """The shipped rules extended by `first` (a recipe's `rules:`), then by each `--rules FILE`:
    a rule with a known id replaces that rule in place; a new rule goes before all shipped
    ones (a user's rule is more specific)."""
    rules = list(default_rules())
    layers: list[list[Rule]] = [list(first)]
    for path in extra:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--rules {path}: cannot read ({e.strerror or e})") from e
        layers.append(_parse(text, path))
    for layer in layers:
        added = []
        for rule in layer:
            index = next((i for i, r in enumerate(rules) if r.id == rule.id), None)
            if index is None:
                added.append(rule)
            else:
                rules[index] = rule
        rules[0:0] = added
    return tuple(rules)


def _hex(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value:
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


def mnemonic_of(instruction: str | None) -> str | None:
    """`notrack jmp rax` -> `jmp`; `rep movsb ...` -> `movsb`."""
    words = (instruction or "").split()
    while words and words[0] in _PREFIXES:
        words.pop(0)
    return words[0] if words else None


def crash_facts(crash: Mapping[str, Any]) -> dict[str, Any]:
    """The values the rule conditions look at, derived from one crash record."""
    pc, fault = _hex(crash.get("address")), _hex(crash.get("fault_address"))
    rsp = _hex((crash.get("registers") or {}).get("rsp"))
    frames = crash.get("frames") or []
    sanitizer = crash.get("sanitizer") or {}
    return {
        "signal": crash.get("signal"),
        "exception": crash.get("exception"),
        "access": crash.get("access"),
        "check": crash.get("check"),
        "instruction": crash.get("instruction") or "",
        "mnemonic": mnemonic_of(crash.get("instruction")),
        "near_null": fault is not None and fault < NEAR_NULL,
        "pc_near_null": pc is not None and pc < NEAR_NULL,
        "fault_at_pc": crash.get("access") == "execute" and fault is not None and fault == pc,
        # Code on the stack has no module; rsp is at most a few frames below it.
        "pc_in_stack": pc is not None and rsp is not None and crash.get("module") is None
                       and abs(pc - rsp) < STACK_REACH,
        # A return address below the crashing frame that lies in no module: the
        # unwinder followed a smashed return address.
        "frames_unknown": any(f.get("module") is None for f in frames[1:]),
        "frames": {str(f.get("symbol") or "").split("+", 1)[0] for f in frames},
        "sanitizer": sanitizer.get("bug_type"),
        "sanitizer_access": sanitizer.get("access"),
        "sanitizer_tool": sanitizer.get("tool") or "",
        "sanitizer_detail": sanitizer.get("detail") or sanitizer.get("bug_type") or "",
        "sanitizer_casr": _casr_sanitizer_class(sanitizer),
        "sent": bool(crash.get("sent")),
    }


# CASR's sanitizer classes that it splits by the access: NAME(read), NAME(write), and
# NAME when the report gives no access (libcasr execution_class.rs).
_CASR_BY_ACCESS = frozenset({
    "heap-buffer-overflow", "global-buffer-overflow", "stack-use-after-scope", "stack-use-after-return",
    "stack-buffer-overflow", "stack-buffer-underflow", "heap-use-after-free", "container-overflow"})


def _casr_sanitizer_class(sanitizer: Mapping[str, Any]) -> str:
    """CASR's name for a sanitizer report: `heap-buffer-overflow(write)`, `double-free`, ..."""
    bug = str(sanitizer.get("bug_type") or "")
    if not bug:
        return ""
    if sanitizer.get("tool") == "UndefinedBehaviorSanitizer":
        # CASR names a UBSan warning by its SUMMARY word; gcc's runtime says undefined-behavior.
        return str(sanitizer.get("kind") or bug)
    access = sanitizer.get("access")
    if bug in _CASR_BY_ACCESS and access in ("read", "write"):
        return f"{bug}({access})"
    return bug


def _accepts(allowed: Sequence[Any], value: Any) -> bool:
    for item in allowed:
        if item == "*" and value is not None:
            return True
        if isinstance(item, str) and item.endswith("*") and isinstance(value, str) and value.startswith(item[:-1]):
            return True
        if item == value:
            return True
    return False


def holds(when: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """True when every condition of `when` holds for these facts."""
    for key, expected in when.items():
        if key in _LIST_KEYS:
            ok = _accepts(expected, facts[key])
        elif key in _BOOL_KEYS:
            ok = bool(facts[key]) == expected
        elif key == "instruction":
            ok = _regex(expected, "rule").search(facts["instruction"]) is not None
        elif key == "in_frames":
            ok = bool(facts["frames"] & set(expected))
        elif key == "any":
            ok = any(holds(sub, facts) for sub in expected)
        elif key == "not":
            ok = not holds(expected, facts)
        else:       # the schema rejects unknown keys; never match on one that slipped through
            ok = False
        if not ok:
            return False
    return True


def _describe(template: str, facts: Mapping[str, Any]) -> str:
    # Plain {name} substitution, not str.format: a rules file must not reach attributes.
    return _FIELD.sub(lambda m: str(facts.get(m.group(1)) or ""), template)


def classify(crash: Mapping[str, Any], rules: Sequence[Rule] | None = None) -> dict[str, Any]:
    """{class, rule, description, matches}: the first matching rule, and the ids of all that match."""
    facts = crash_facts(crash)
    matched = [r for r in (rules if rules is not None else default_rules()) if holds(r.when, facts)]
    if not matched:
        return {"class": "UNKNOWN", "rule": "Unclassified", "description": "No rule matched", "matches": []}
    first = matched[0]
    result = {"class": first.cls, "rule": first.id, "description": _describe(first.description, facts),
              "matches": [r.id for r in matched]}
    if first.casr:
        result["casr"] = _describe(first.casr, facts) or first.id
    return result


def annotate(crash: dict[str, Any], rules: Sequence[Rule] | None = None) -> dict[str, Any]:
    """Add `classification` and `hash` (SPEC section 5) to a crash record, in place; return it."""
    crash["classification"] = classify(crash, rules)
    crash["hash"] = stack_hash(crash.get("frames") or [], crash)
    return crash


def rules_digest(rules: Sequence[Rule]) -> str:
    """SHA-256 of the rules in effect, so a report says which rule set classified it."""
    import hashlib
    import json

    text = json.dumps([[r.id, r.cls, r.description, r.when] + ([r.casr] if r.casr else []) for r in rules],
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def severity(cls: str) -> int:
    """0 for EXPLOITABLE ... 4 for UNKNOWN."""
    return CLASSES.index(cls) if cls in CLASSES else len(CLASSES)
