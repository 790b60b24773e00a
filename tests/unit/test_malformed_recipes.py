"""Malformed recipes: each is refused with the right line and a message that names the problem."""

from __future__ import annotations

import pytest

from instrument.errors import RecipeError, RecipeErrors, RecipeSyntaxError, SchemaError
from instrument.recipe.load import load_recipe_text

# Lines 1-3 of most cases; their own text starts on line 4.
H = "version: 1\nname: t\ndescription: d\n"

# (case id, recipe text, line of the first error, words its message contains, error class)
CASES: list[tuple[str, str, int, list[str], type[RecipeError]]] = [
    # -- YAML syntax ------------------------------------------------------
    ("tab-indent", H + "target:\n\trun: [a]\n", 5, ["tab"], RecipeSyntaxError),
    ("unclosed-quote", H + 'target:\n  cwd: "abc\n', 6, ["quoted scalar", "line 5"], RecipeSyntaxError),
    ("bad-indentation", H + "target:\n  run: [a]\n cwd: x\n", 6, ["expected <block end>"], RecipeSyntaxError),
    ("mapping-in-scalar", H + "author: x\n  tags: y\n", 5, ["mapping values are not allowed"], RecipeSyntaxError),
    ("unclosed-flow", H + "tags: [a, b\nauthor: x\n", 5, ["flow sequence"], RecipeSyntaxError),
    ("two-documents", H + "---\nname: u\n", 4, ["one YAML document"], RecipeSyntaxError),
    ("not-a-mapping", "- version: 1\n", 1, ["mapping", "top level"], RecipeSyntaxError),
    ("empty", "# nothing\n", 1, ["empty"], RecipeSyntaxError),
    ("duplicate-top-key", H + "name: u\n", 4, ["duplicate key 'name'", "line 2"], RecipeSyntaxError),
    ("duplicate-nested-key", H + "breakpoints:\n  - at: a\n    at: b\n", 6, ["duplicate key 'at'"], RecipeSyntaxError),
    ("python-tag", H + "author: !!python/object/apply:os.system ['true']\n", 4, ["!!python/object/apply", "not allowed"],
     RecipeSyntaxError),
    ("python-name-tag", H + "target:\n  run: [!!python/name:os.system x]\n", 5, ["!!python/name"], RecipeSyntaxError),
    ("custom-tag", H + "author: !me x\n", 4, ["tag '!me'"], RecipeSyntaxError),
    ("binary-tag", H + "author: !!binary aGk=\n", 4, ["!!binary"], RecipeSyntaxError),
    ("set-tag", H + "tags: !!set {a: null}\n", 4, ["!!set"], RecipeSyntaxError),
    ("merge-key", H + "target: &t\n  cwd: x\nrequires:\n  <<: *t\n", 7, ["merge keys"], RecipeSyntaxError),
    ("recursive-alias", H + "tags: &a [x, *a]\n", 4, ["recursive alias"], RecipeSyntaxError),
    ("control-character", H + "author: a\x01b\n", 4, ["unacceptable character"], RecipeSyntaxError),
    # -- top level ----------------------------------------------------------
    ("version-2", "version: 2\nname: t\ndescription: d\n", 1, ["'version' must be 1", "got 2"], SchemaError),
    ("version-string", "version: '1'\nname: t\ndescription: d\n", 1, ["'version' must be 1"], SchemaError),
    ("missing-version", "name: t\nbreakpoints: [{at: x}]\n", 1, ["missing required key 'version'"], SchemaError),
    ("bad-name-pattern", "version: 1\nname: My Recipe\ndescription: d\n", 2, ["'name' must be lower-case"], SchemaError),
    ("unknown-top-key", H + "brekpoints: []\n", 4, ["unknown key 'brekpoints' in recipe", "did you mean 'breakpoints'"],
     SchemaError),
    ("tags-not-list", H + "tags: heap\n", 4, ["'tags'", "expected a list", "got string 'heap'"], SchemaError),
    ("tags-not-strings", H + "tags: [a, 3]\n", 4, ["'tags[1]'", "expected a string", "integer 3"], SchemaError),
    ("requires-bad-os", H + "requires: {os: macos}\n", 4, ["'os' must be one of linux, windows", "'macos'"], SchemaError),
    ("requires-unknown-key", H + "requires:\n  cpu: x86\n", 5, ["unknown key 'cpu' in requires"], SchemaError),
    # -- params ---------------------------------------------------------------
    ("param-bad-name", H + "params:\n  2fast: 1\n", 5, ["invalid name '2fast' in params"], SchemaError),
    ("param-reserved-register", H + "params:\n  rax: 1\n", 5, ["'rax' is reserved"], RecipeError),
    ("param-reserved-arg", H + "params:\n  n: 1\n  arg0: 2\n", 6, ["'arg0' is reserved"], RecipeError),
    ("param-reserved-hits", H + "params:\n  hits: 2\n", 5, ["'hits' is reserved"], RecipeError),
    ("param-default-wrong-type", H + "params:\n  n:\n    type: int\n    default: ten\n", 7,
     ["param 'n' is an int", "str 'ten'"], RecipeError),
    ("param-bool-default-for-str", H + "params:\n  s: {type: str, default: 5}\n", 5,
     ["param 's' is a str", "quote it"], RecipeError),
    ("param-bad-type", H + "params:\n  n: {type: integer, default: 1}\n", 5,
     ["'type' must be one of int, float, str, bool"], SchemaError),
    ("param-no-type-no-default", H + "params:\n  n: {description: count}\n", 5, ["needs a 'type'"], SchemaError),
    ("param-unknown-key", H + "params:\n  n: {type: int, help: x}\n", 5, ["unknown key 'help' in param 'n'"], SchemaError),
    ("param-null", H + "params:\n  n: null\n", 5, ["expected a boolean", "got null"], SchemaError),
    # -- target ---------------------------------------------------------------
    ("target-not-mapping", H + "target: ./app\n", 4, ["'target'", "expected a mapping"], SchemaError),
    ("run-and-attach", H + "target:\n  run: [./a]\n  attach: 12\n", 6, ["'run' and 'attach' are mutually exclusive"],
     SchemaError),
    ("run-empty", H + "target:\n  run: []\n", 5, ["'run' must not be empty"], SchemaError),
    ("run-string", H + "target:\n  run: ./app --x\n", 5, ["'run'", "expected a list"], SchemaError),
    ("run-bool-arg", H + "target:\n  run: [./a, true]\n", 5, ["'run[1]'", "boolean true"], SchemaError),
    ("attach-negative", H + "target:\n  attach: -5\n", 5, ["'attach' must be at least 1"], SchemaError),
    ("attach-bad-string", H + "target:\n  attach: me\n", 5, ["'attach' must be a pid or a '{param}' field"], SchemaError),
    ("zero-timeout", H + "target:\n  timeout: 0\n", 5, ["'timeout' must be greater than 0"], SchemaError),
    ("timeout-string", H + "target:\n  timeout: ten\n", 5, ["expected a number", "string 'ten'"], SchemaError),
    ("follow-forks-string", H + "target:\n  follow_forks: maybe\n", 5, ["expected a boolean"], SchemaError),
    ("env-list-value", H + "target:\n  env: {A: [1]}\n", 5, ["'A'", "got a list"], SchemaError),
    ("unknown-param-in-run", H + "params: {n: 1}\ntarget:\n  run: [./a, \"--n={m}\"]\n", 6,
     ["unknown param 'm'", "declared params: n"], RecipeError),
    ("unknown-param-in-env", H + "target:\n  env: {X: \"{nope}\"}\n", 5, ["unknown param 'nope'"], RecipeError),
    ("unknown-param-in-attach", H + "target:\n  attach: \"{pid}\"\n", 5, ["unknown param 'pid'"], RecipeError),
    ("bad-field-in-cwd", H + "params: {n: 1}\ntarget:\n  cwd: \"/tmp/{n\"\n", 6, ["bad param field"], RecipeError),
    ("single-brace-in-run", H + "target:\n  run: [\"a}b\"]\n", 5, ["single '}'"], RecipeError),
    # -- breakpoints ------------------------------------------------------------
    ("breakpoints-not-list", H + "breakpoints:\n  at: main\n", 5, ["'breakpoints'", "expected a list"], SchemaError),
    ("breakpoint-missing-at", H + "breakpoints:\n  - id: a\n", 5, ["missing required key 'at' in breakpoint 1"],
     SchemaError),
    ("breakpoint-unknown-key", H + "breakpoints:\n  - at: main\n    condition: x\n", 6,
     ["unknown key 'condition' in breakpoint 1"], SchemaError),
    ("breakpoint-bad-type", H + "breakpoints:\n  - at: main\n    type: software\n", 6,
     ["'type' must be one of soft, hardware, memory", "'software'"], SchemaError),
    ("breakpoint-bad-id", H + "breakpoints:\n  - at: main\n    id: 9lives\n", 6, ["'id' must be a letter"], SchemaError),
    ("breakpoint-at-empty", H + "breakpoints:\n  - at: ''\n", 5, ["'at' must not be empty"], SchemaError),
    ("breakpoint-at-float", H + "breakpoints:\n  - at: 1.5\n", 5, ["'at'", "expected a string or an integer"],
     SchemaError),
    ("hardware-bad-access", H + "breakpoints:\n  - at: x\n    type: hardware\n    access: any\n", 7,
     ["'access' must be one of execute, write, readwrite for a hardware breakpoint"], SchemaError),
    ("memory-bad-access", H + "breakpoints:\n  - at: x\n    type: memory\n    access: readwrite\n", 7,
     ["'access' must be one of write, any for a memory breakpoint"], SchemaError),
    ("soft-with-access", H + "breakpoints:\n  - at: x\n    access: write\n", 6,
     ["'access' does not apply to a soft breakpoint"], SchemaError),
    ("soft-with-size", H + "breakpoints:\n  - at: x\n    type: soft\n    size: 4\n", 7,
     ["'size' does not apply to a soft breakpoint"], SchemaError),
    ("soft-with-mapping-access", H + "breakpoints:\n  - at: x\n    access: {a: 1}\n", 6,
     ["'access' does not apply to a soft breakpoint"], SchemaError),
    ("hardware-size-3", H + "breakpoints:\n  - at: x\n    type: hardware\n    access: write\n    size: 3\n", 8,
     ["'size' must be one of 1, 2, 4, 8"], SchemaError),
    ("memory-size-0", H + "breakpoints:\n  - at: x\n    type: memory\n    size: 0\n", 7, ["'size' must be at least 1"],
     SchemaError),
    ("hardware-misaligned-int", H + "breakpoints:\n  - at: 0x1002\n    type: hardware\n    access: write\n"
     "    size: 4\n", 5, ["not aligned", "0x1002", "multiple of 4"], RecipeError),
    ("hardware-misaligned-string", H + "breakpoints:\n  - at: '0x1004'\n    type: hardware\n"
     "    access: readwrite\n", 5, ["8 bytes at 0x1004 is not aligned"], RecipeError),
    ("hardware-execute-size-4", H + "breakpoints:\n  - at: main\n    type: hardware\n    size: 4\n", 7,
     ["execute breakpoint watches 1 byte"], RecipeError),
    ("fifth-hardware", H + "breakpoints:\n"
     + "".join(f"  - at: f{i}\n    type: hardware\n" for i in range(5)), 14,
     ["'f4' is hardware breakpoint number 5", "4 debug registers"], RecipeError),
    ("duplicate-ids", H + "breakpoints:\n  - id: a\n    at: x\n  - id: a\n    at: y\n", 7,
     ["duplicate breakpoint id 'a'", "line 5"], RecipeError),
    ("once-and-limit", H + "breakpoints:\n  - at: x\n    limit: 3\n    once: true\n", 7, ["'once: true' or 'limit: N'"],
     RecipeError),
    ("negative-limit", H + "breakpoints:\n  - at: x\n    limit: -1\n", 6, ["'limit' must be at least 1", "-1"],
     SchemaError),
    ("limit-string", H + "breakpoints:\n  - at: x\n    limit: ten\n", 6, ["expected an integer", "string 'ten'"],
     SchemaError),
    ("enabled-string", H + "breakpoints:\n  - at: x\n    enabled: 'no'\n", 6, ["'enabled'", "expected a boolean"],
     SchemaError),
    ("on-return-memory", H + "breakpoints:\n  - at: buf\n    type: memory\n    on_return: [backtrace]\n", 7,
     ["'on_return'", "memory breakpoint"], RecipeError),
    ("on-return-hardware-write", H + "breakpoints:\n  - at: buf\n    type: hardware\n    access: write\n"
     "    on_return: [backtrace]\n", 8, ["'on_return'", "hardware write"], RecipeError),
    ("when-empty", H + "breakpoints:\n  - at: x\n    when: ''\n", 6, ["'when' must not be empty"], SchemaError),
    # -- actions -------------------------------------------------------------
    ("unknown-action", H + "crash:\n  - frob: 1\n", 5, ["unknown action 'frob'", "expected one of log, dump"],
     SchemaError),
    ("unknown-bare-action", H + "crash:\n  - frob\n", 5, ["unknown action 'frob'"], SchemaError),
    ("misspelt-action", H + "crash:\n  - lgo: x\n", 5, ["unknown action 'lgo'", "did you mean 'log'"], SchemaError),
    ("bare-action-needs-value", H + "crash:\n  - log\n", 5, ["action 'log' needs a value"], SchemaError),
    ("action-two-keys", H + "crash:\n  - log: a\n    backtrace: null\n", 5,
     ["exactly one key", "log, backtrace"], SchemaError),
    ("action-empty-mapping", H + "crash:\n  - {}\n", 5, ["empty action"], SchemaError),
    ("action-not-string-or-map", H + "crash:\n  - 5\n", 5, ["expected a string or a mapping", "integer 5"],
     SchemaError),
    ("actions-not-list", H + "crash:\n  log: x\n", 5, ["'crash'", "expected a list"], SchemaError),
    ("log-no-keys", H + "crash:\n  - log: {}\n", 5, ["log needs 'message' or 'registers'"], SchemaError),
    ("log-unknown-key", H + "crash:\n  - log: {text: hi}\n", 5, ["unknown key 'text' in log action"], SchemaError),
    ("log-registers-some", H + "crash:\n  - log: {registers: some}\n", 5, ["list of register names or 'all'"],
     SchemaError),
    ("log-not-a-register", H + "crash:\n  - log:\n      registers: [rip, rxx]\n", 6, ["'rxx' is not a register"],
     RecipeError),
    ("dump-missing-size", H + "crash:\n  - dump: {at: rsp}\n", 5, ["missing required key 'size' in dump action"],
     SchemaError),
    ("dump-size-zero", H + "crash:\n  - dump: {at: rsp, size: 0}\n", 5, ["'size' must be at least 1"], SchemaError),
    ("dump-escaping-dotdot", H + "crash:\n  - dump: {at: rsp, size: 8, file: ../x}\n", 5, ["'../x'", "no '..'"],
     RecipeError),
    ("dump-absolute", H + "crash:\n  - dump:\n      at: rsp\n      size: 8\n      file: /etc/passwd\n", 8,
     ["'/etc/passwd'", "not absolute"], RecipeError),
    ("dump-inner-dotdot", H + "crash:\n  - dump: {at: rsp, size: 8, file: a/../../b}\n", 5, ["'a/../../b'", "'..'"],
     RecipeError),
    ("dump-backslash", H + "crash:\n  - dump: {at: rsp, size: 8, file: '..\\x'}\n", 5, ["backslash"], RecipeError),
    ("dump-drive", H + "crash:\n  - dump: {at: rsp, size: 8, file: 'C:/x'}\n", 5, ["not absolute"], RecipeError),
    ("dump-nul", H + "crash:\n  - dump: {at: rsp, size: 8, file: \"a\\0b\"}\n", 5, ["NUL"], RecipeError),
    ("set-empty", H + "crash:\n  - set: {}\n", 5, ["set needs at least one register"], SchemaError),
    ("set-not-register", H + "crash:\n  - set: {rax: 0, foo: 1}\n", 5, ["'foo' is not a register"], RecipeError),
    ("write-two-payloads", H + "crash:\n  - write: {at: rsp, bytes: '00', u32: 1}\n", 5,
     ["exactly one payload", "bytes, u32"], SchemaError),
    ("write-no-payload", H + "crash:\n  - write: {at: rsp}\n", 5, ["write needs a payload"], SchemaError),
    ("write-bad-hex", H + "crash:\n  - write: {at: rsp, bytes: xyz}\n", 5, ["hex byte pairs"], SchemaError),
    ("backtrace-depth-0", H + "crash:\n  - backtrace: {depth: 0}\n", 5, ["'depth' must be at least 1"], SchemaError),
    ("backtrace-depth-too-big", H + "crash:\n  - backtrace: {depth: 1000}\n", 5, ["'depth' must be at most 256"],
     SchemaError),
    ("backtrace-number", H + "crash:\n  - backtrace: 5\n", 5, ["expected null or a mapping", "integer 5"], SchemaError),
    ("disassemble-count-string", H + "crash:\n  - disassemble: {count: many}\n", 5,
     ["'count'", "expected an integer"], SchemaError),
    ("return-list", H + "crash:\n  - return: [1]\n", 5, ["'return'", "expected a string or an integer"], SchemaError),
    ("kill-with-value", H + "crash:\n  - kill: now\n", 5, ["'kill'", "expected null"], SchemaError),
    ("dangling-enable", H + "breakpoints:\n  - id: a\n    at: x\n    actions:\n      - enable: b\n", 8,
     ["enable: no breakpoint has id 'b'", "ids: a"], RecipeError),
    ("dangling-disable-in-event", H + "events:\n  exit_thread:\n    - disable: nope\n", 6,
     ["disable: no breakpoint has id 'nope'"], RecipeError),
    ("two-backtraces", H + "breakpoints:\n  - at: x\n    actions:\n      - backtrace\n      - backtrace: {depth: 3}\n",
     8, ["one backtrace per stop"], RecipeError),
    # -- events ---------------------------------------------------------------
    ("unknown-event", H + "events:\n  load_dl: []\n", 5, ["unknown event 'load_dl'", "did you mean 'load_dll'"],
     SchemaError),
    ("event-upper-case", H + "events:\n  ACCESS_VIOLATION: []\n", 5, ["unknown event 'ACCESS_VIOLATION'"], SchemaError),
    ("event-not-list", H + "events:\n  any: kill\n", 5, ["'any'", "expected a list", "string 'kill'"], SchemaError),
]


@pytest.mark.parametrize(("text", "line", "words", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_recipe_is_refused_at_the_right_line(text: str, line: int, words: list[str],
                                                        kind: type[RecipeError]) -> None:
    with pytest.raises(RecipeErrors) as info:
        load_recipe_text(text, "bad.yaml")
    errors = info.value.errors
    assert errors and all(isinstance(e, RecipeError) for e in errors)
    first = errors[0]
    assert isinstance(first, kind), f"{type(first).__name__}: {first}"
    assert first.location is not None and first.location.file == "bad.yaml"
    assert first.location.line == line, str(first)
    for word in words:
        assert word in first.message, f"{word!r} not in {first.message!r}"
    assert str(first).startswith(f"bad.yaml:{line}:{first.location.col}: error: ")


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_all_errors_are_reported_sorted_by_line() -> None:
    text = H + ("breakpoints:\n"
                "  - at: x\n"
                "    limit: 0\n"          # line 6: schema
                "    type: bogus\n"       # line 7: schema
                "crash:\n"
                "  - frob\n")             # line 9: schema
    with pytest.raises(RecipeErrors) as info:
        load_recipe_text(text, "r.yaml")
    assert [e.location.line for e in info.value.errors if e.location] == [6, 7, 9]


def test_all_semantic_errors_are_reported_together() -> None:
    text = H + ("params: {hits: 1}\n"                     # 4: reserved
                "breakpoints:\n"
                "  - id: a\n"
                "    at: x\n"
                "  - id: a\n"                             # 8: duplicate
                "    at: y\n"
                "    actions: [{enable: zz}]\n")          # 10: dangling
    with pytest.raises(RecipeErrors) as info:
        load_recipe_text(text, "r.yaml")
    lines = [e.location.line for e in info.value.errors if e.location]
    assert lines == [4, 8, 10]
    assert "\n" in str(info.value)


def test_one_error_per_place() -> None:
    # `limit: ten` fails only `type`; nothing else may be reported there.
    with pytest.raises(RecipeErrors) as info:
        load_recipe_text(H + "breakpoints:\n  - at: x\n    limit: ten\n", "r.yaml")
    assert len(info.value.errors) == 1


def test_unclosed_quote_points_at_problem_mark() -> None:
    with pytest.raises(RecipeErrors) as info:
        load_recipe_text(H + 'author: "abc\n', "r.yaml")
    err, note = info.value.errors
    assert (err.location.line, err.location.col) == (5, 1)
    # ... and a note at the quote that was never closed.
    assert str(note) == "r.yaml:4:9: note: the quoted scalar starts here"
