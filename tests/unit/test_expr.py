"""Tests of instrument.expr: grammar, semantics, memory reads, format strings, and hostile input."""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instrument.arch import x86_64 as registers
from instrument.errors import EvaluationError, ExpressionError, RecipeError
from instrument.expr import (
    BUILTIN_NAMES, MAX_LENGTH, STR_CAP, Expr, Format, parse, parse_format, read_c_string,
)

MEM_BASE = 0x1000
# 0x00 "passwd\0" | 0x08 u8 0xff, u16 0xfffe, u32 0xfffffffd at 0x0c... see _memory()
STRING_AT = MEM_BASE
INTS_AT = MEM_BASE + 0x10


def _memory() -> bytes:
    mem = bytearray(0x1000)   # one whole page, as real mappings are
    mem[0:7] = b"passwd\0"
    mem[0x10:0x11] = b"\xff"                                   # u8 255 / i8 -1
    mem[0x12:0x14] = (0xFFFE).to_bytes(2, "little")             # i16 -2
    mem[0x14:0x18] = (0xFFFFFFFD).to_bytes(4, "little")         # i32 -3
    mem[0x18:0x20] = (2**64 - 4).to_bytes(8, "little")          # i64 -4
    mem[0x20:0x28] = (0x1122334455667788).to_bytes(8, "little")
    mem[0x28:0x2C] = b"\xffok\0"                                # invalid utf-8
    return bytes(mem)


class FakeEnv:
    """An Env over a register dict, one mapped bytes range, and a name table."""

    def __init__(self, regs: dict[str, int] | None = None, names: dict[str, Any] | None = None,
                 base: int = MEM_BASE, memory: bytes | None = None) -> None:
        self.regs = {name: 0 for name in registers.USER_REGS_FIELDS}
        self.regs.update(regs or {})
        self.names = names or {}
        self.base = base
        self.memory = _memory() if memory is None else memory
        self.reads: list[tuple[int, int]] = []

    def register(self, name: str) -> int:
        return registers.read_register(self.regs, name)

    def read_memory(self, address: int, size: int) -> bytes:
        self.reads.append((address, size))
        off = address - self.base
        if off < 0 or off + size > len(self.memory):
            raise EvaluationError(f"cannot read {size} bytes at {address:#x}")
        return self.memory[off: off + size]

    def lookup(self, name: str) -> int | str:
        if name not in self.names:
            raise EvaluationError(f"unknown name '{name}'")
        return self.names[name]


def ev(text: str | int, env: FakeEnv | None = None) -> int | str:
    return parse(text).evaluate(env or FakeEnv())


# ---------------------------------------------------------------- literals and operators

@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42), ("0x2A", 42), ("0X2a", 42), ("0o52", 42), ("0b101010", 42),
        ("1_000_000", 1_000_000), ("0xffff_ffff", 0xFFFFFFFF), ("0", 0), ("00", 0),
        ('"a\\n\\t\\\\\\"\\x41"', 'a\n\t\\"A'), ("'it\\'s'", "it's"), ('""', ""),
    ],
)
def test_literals(text: str, value: int | str) -> None:
    assert ev(text) == value


PRECEDENCE = [
    # (expression, the value C and Python agree on)
    ("1 + 2 * 3", 1 + 2 * 3), ("(1 + 2) * 3", (1 + 2) * 3), ("10 - 4 - 3", 10 - 4 - 3),
    ("100 / 10 / 5", 2), ("2 * 3 % 4", 2 * 3 % 4), ("1 << 2 + 1", 1 << 2 + 1),
    ("256 >> 2 >> 1", 256 >> 2 >> 1), ("1 | 2 ^ 3 & 4", 1 | 2 ^ 3 & 4),
    ("6 & 3 ^ 5", 6 & 3 ^ 5), ("1 ^ 3 | 4", 1 ^ 3 | 4), ("-2 * 3", -6), ("- -5", 5),
    ("~0 & 0xff", 0xFF), ("-1 + 3", 2), ("1 + 2 < 4", 1), ("1 << 3 == 8", 1),
    ("7 & 3 == 3", 1),  # & binds tighter than ==, so this is (7 & 3) == 3
    ("1 < 2 and 3 < 2 or 1", 1), ("0 or 0 and 1", 0), ("1 or 0 and 0", 1),
    ("not 0 == 2", 0),  # C: !0 == 2 -> 1 == 2 -> 0 (Python would say 1)
    ("not 1 + 1", 1),  # not binds tighter: (not 1) + 1
    ("(5 > 3) + (2 >= 2) + (1 <= 0) + (4 != 4)", 2), ("3 == 3 == 1", None),
]


@pytest.mark.parametrize(("text", "value"), [p for p in PRECEDENCE if p[1] is not None])
def test_precedence(text: str, value: int) -> None:
    assert ev(text) == value


def test_every_binary_operator() -> None:
    env = FakeEnv({"rax": 13, "rbx": 4})
    table = {
        "+": 17, "-": 9, "*": 52, "/": 3, "%": 1, "&": 4, "|": 13, "^": 9, "<<": 208, ">>": 0,
        "<": 0, "<=": 0, ">": 1, ">=": 1, "==": 0, "!=": 1, "and": 1, "or": 1,
    }
    for op, value in table.items():
        assert ev(f"rax {op} rbx", env) == value, op


def test_unary_operators() -> None:
    env = FakeEnv({"rax": 1})
    assert ev("-rax", env) == -1
    assert ev("~rax", env) == 2**64 - 2          # ~ yields the 64-bit unsigned complement
    assert ev("~0") == 0xFFFF_FFFF_FFFF_FFFF
    assert ev("not rax", env) == 0 and ev("not 0") == 1
    assert ev("rax - 2", env) == -1              # arithmetic is not masked


def test_division_truncates_toward_zero_like_c() -> None:
    assert [ev("-7 / 2"), ev("7 / -2"), ev("-7 / -2"), ev("7 / 2")] == [-3, -3, 3, 3]
    assert [ev("-7 % 2"), ev("7 % -2"), ev("-7 % -2"), ev("7 % 2")] == [-1, 1, -1, 1]
    for text in ("rax / 0", "rax % 0", "1 / 0"):
        with pytest.raises(EvaluationError, match="division by zero"):
            ev(text)


def test_shifts() -> None:
    assert ev("1 << 64") == 2**64
    with pytest.raises(EvaluationError, match="negative shift"):
        ev("rax << -1")
    with pytest.raises(EvaluationError, match="larger than"):
        ev("1 << 100000")


def test_and_or_short_circuit_and_yield_1_or_0() -> None:
    env = FakeEnv()
    assert ev("0 and u8[0]", env) == 0
    assert ev("1 or u8[0]", env) == 1
    assert ev("5 and 7", env) == 1 and ev("0 or 9", env) == 1
    assert env.reads == []
    with pytest.raises(EvaluationError):
        ev("1 and u8[0]", env)
    with pytest.raises(EvaluationError):
        ev("0 or u8[0]", env)


def test_chained_comparison_is_rejected() -> None:
    with pytest.raises(ExpressionError, match="chained comparison") as e:
        parse("1 < rax < 3")
    assert e.value.column == 8
    assert ev("(1 < 2) < 3") == 1


# ---------------------------------------------------------------- registers, names, memory

def test_registers_and_sub_registers_go_through_env_register() -> None:
    env = FakeEnv({"rax": 0x1122334455667788, "rsp": 0x7FF0, "r8": 0x1FF})
    assert ev("eax", env) == 0x55667788
    assert ev("ah", env) == 0x77
    assert ev("r8b + 1", env) == 0x100
    assert ev("rsp", env) == 0x7FF0


def test_names_lists_free_identifiers_only() -> None:
    e = parse("hits + arg0 + arg5 + retval + rax + eax + libc.so.6!malloc + foo.cold"
              " + memcpy@plt + n + ld-linux-x86-64.so.2!_dl_debug_state + kernel32.dll!CreateFileW")
    assert e.names == frozenset({"libc.so.6!malloc", "foo.cold", "memcpy@plt", "n",
                                 "ld-linux-x86-64.so.2!_dl_debug_state", "kernel32.dll!CreateFileW"})
    assert BUILTIN_NAMES == {"arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "retval", "hits"}


def test_module_qualified_names_evaluate_through_lookup() -> None:
    env = FakeEnv(names={"libc.so.6!malloc": 0x7F0000001000, "hit": 0x401136, "arg0": 3})
    assert ev("libc.so.6!malloc+4", env) == 0x7F0000001004
    assert ev("hit+4", env) == 0x40113A
    assert ev("arg0 % 2 == 0", env) == 0
    assert ev("hit!=0", env) == 1   # `!=` is the operator, not a module separator
    assert ev("libc.so.6!malloc != hit", env) == 1
    with pytest.raises(EvaluationError, match="unknown name 'nope'"):
        ev("nope + 1", env)


def test_dunder_names_rejected_but_c_double_underscore_symbols_allowed() -> None:
    assert parse("__libc_start_main").names == {"__libc_start_main"}
    assert parse("libc.so.6!__stack_chk_fail").names == {"libc.so.6!__stack_chk_fail"}
    with pytest.raises(ExpressionError):
        parse("libc.so.6!__init__")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (f"u8[{INTS_AT:#x}]", 0xFF), (f"i8[{INTS_AT:#x}]", -1),
        (f"u16[{INTS_AT + 2:#x}]", 0xFFFE), (f"i16[{INTS_AT + 2:#x}]", -2),
        (f"u32[{INTS_AT + 4:#x}]", 0xFFFFFFFD), (f"i32[{INTS_AT + 4:#x}]", -3),
        (f"u64[{INTS_AT + 8:#x}]", 2**64 - 4), (f"i64[{INTS_AT + 8:#x}]", -4),
        (f"u64[{INTS_AT + 0x10:#x}]", 0x1122334455667788),
        (f"u32[{INTS_AT + 0x10:#x}]", 0x55667788),   # little-endian
        ("u8[rsp + 8]", 0xFF),
        (f"u16[u8[{INTS_AT:#x}] + 0x1000 - 0xff + 0x10 + 2]", 0xFFFE),
    ],
)
def test_memory_reads(text: str, value: int) -> None:
    assert ev(text, FakeEnv({"rsp": INTS_AT - 8})) == value


def test_memory_read_failures() -> None:
    env = FakeEnv()
    with pytest.raises(EvaluationError, match="cannot read"):
        ev("u32[0]", env)
    with pytest.raises(EvaluationError, match="cannot read"):
        ev(f"u64[{MEM_BASE + 0xFFC:#x}]", env)    # straddles the end of the mapping
    with pytest.raises(EvaluationError, match="64-bit address space"):
        ev("u8[-1]", env)
    with pytest.raises(EvaluationError, match="must be an integer"):
        ev('u8["x"]', env)


def test_str_reads_c_strings() -> None:
    env = FakeEnv({"rdi": STRING_AT})
    assert ev("str(rdi)", env) == "passwd"
    assert ev('str(rdi) == "passwd"', env) == 1
    assert ev("str(rdi) == 'passw'", env) == 0
    assert ev("str(rdi, 3)", env) == "pas"
    assert ev("str(rdi, 0)", env) == ""
    assert ev(f"str({MEM_BASE + 0x28:#x})", env) == "\\xffok"   # invalid utf-8 is escaped
    with pytest.raises(EvaluationError):
        ev("str(0)", env)
    with pytest.raises(EvaluationError, match="negative"):
        ev("str(rdi, -1)", env)


def test_str_stops_at_an_unmapped_page_and_at_the_cap() -> None:
    # "abcdef" with no NUL, ending exactly at a page boundary: the page-by-page
    # read returns what was mapped instead of failing on the next page.
    env = FakeEnv(base=0x2000 - 6, memory=b"abcdef")
    assert read_c_string(env, 0x2000 - 6) == "abcdef"
    big = FakeEnv(base=0x10000, memory=b"A" * (3 * STR_CAP))
    assert len(ev("str(0x10000)", big)) == STR_CAP
    assert all(size <= 4096 for _, size in big.reads)


def test_strings_and_ints_do_not_mix() -> None:
    env = FakeEnv({"rdi": STRING_AT}, names={"module": "libc.so.6"})
    for text in ("str(rdi) == 1", "module < 3", "str(rdi) + 1", "-module", "~str(rdi)", "u8[module]"):
        with pytest.raises(EvaluationError):
            ev(text, env)
    assert ev('module == "libc.so.6"', env) == 1
    assert ev('module and 1', env) == 1
    assert ev('not ""', env) == 1


# ---------------------------------------------------------------- Expr object

def test_parse_accepts_ints_from_yaml() -> None:
    e = parse(0x401136)
    assert e.text == "0x401136" and e.is_constant() and e.evaluate(FakeEnv()) == 0x401136
    assert parse(e.text).evaluate(FakeEnv()) == 0x401136
    with pytest.raises(ExpressionError):
        parse(True)  # type: ignore[arg-type]
    with pytest.raises(ExpressionError):
        parse(None)  # type: ignore[arg-type]


def test_is_constant() -> None:
    assert parse("0x400000 + 0x1136 * 2").is_constant()
    assert parse('"abc"').is_constant()
    for text in ("rax", "u8[1]", "hits", "main + 1", "str(1)", "1 / 0 + rax"):
        assert not parse(text).is_constant(), text
    assert parse("1 / 0").is_constant()      # constant, and still raises when evaluated
    with pytest.raises(EvaluationError):
        parse("1 / 0").evaluate(FakeEnv())


def test_expr_is_immutable_and_kinds() -> None:
    e = parse("rax + 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.text = "x"  # type: ignore[misc]
    assert isinstance(e, Expr)
    assert (parse("rax").kind, parse("str(rdi)").kind, parse("module").kind) == ("int", "str", "any")


def test_nothing_reaches_python_eval() -> None:
    calls: list[str] = []
    saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}

    def spy(name: str) -> Any:
        def record(*args: object, **kwargs: object) -> Any:
            calls.append(name)
            return saved[name](*args, **kwargs)
        return record

    env = FakeEnv({"rdi": STRING_AT, "rax": 5}, names={"n": 7})
    for name in saved:
        setattr(builtins, name, spy(name))
    try:
        value = parse("rax * n + u8[0x1010] - 0x7_7 + (str(rdi) == \"passwd\")"
                      " + not __x").evaluate
        text = parse_format("{rax:#06x} {str(rdi)} {{n}}").render(env)
    finally:
        for name, fn in saved.items():
            setattr(builtins, name, fn)
    assert calls == []
    env.names["__x"] = 1
    assert text == "0x0005 passwd {n}"
    assert value(env) == 5 * 7 + 255 - 0x77 + 1 + 0


# ---------------------------------------------------------------- rejection of hostile/malformed input

HOSTILE = [
    ("__import__('os')", 0, "not allowed"),
    ("open('x')", 0, "unknown function 'open'"),
    ('eval("1")', 0, "unknown function 'eval'"),
    ("exec('x')", 0, "unknown function 'exec'"),
    ("a.__class__", 2, "not allowed"),
    ("(1).real", 3, "unexpected '.'"),
    ('"x".join', 3, "unexpected '.'"),
    ("lambda: 1", 6, "unexpected ':'"),
    ("1 +", 3, "unexpected end of expression"),
    ("(1", 2, "expected ')'"),
    ("u32[1", 5, "expected ']' after memory address"),
    ("u32(1)", 3, "expected '['"),
    ('"abc', 0, "unterminated string"),
    ("1 ? 2 : 3", 2, "unexpected '?'"),
    ("x[1", 3, "expected ']' after an index"),
    ("(struct req *", 13, "in a type name"),
    ("p->1", 3, "expected a member name"),
    ("{}", 0, "unexpected '{'"),
    (";", 0, "unexpected ';'"),
    ("1; 2", 1, "unexpected ';'"),
    ("1 = 2", 2, "unexpected '='"),
    ("`id`", 0, "unexpected '`'"),
    ("a && b", 2, "use 'and'"),
    ("!a", 0, "use 'not'"),
    ("1 2", 2, "unexpected number '2'"),
    ("rax)", 3, "unexpected ')'"),
    ("", 0, "empty expression"),
    ("   ", 0, "empty expression"),
    ("2 ** 3", 3, "unexpected '*'"),
    ("1.5", 1, "unexpected '.'"),
    ("010", 0, "invalid integer literal"),
    ("0xg", 0, "invalid integer literal"),
    ("'\\q'", 1, "unknown escape"),
    ("libc.so.6!", 10, "expected a symbol name"),
    ("str(rdi", 7, "expected ')' after str()"),
    ("rax and", 7, "unexpected end"),
    ("or 1", 0, "unexpected name 'or'"),
    ("[1]", 0, "unexpected '['"),
    ("x if 1 else 2", 2, "unexpected name 'if'"),
    ("rax\u00e9", 3, "unexpected character"),
    ("rax\x00", 3, "unexpected character"),
]


@pytest.mark.parametrize(("text", "column", "message"), HOSTILE)
def test_hostile_and_malformed_input_is_rejected(text: str, column: int, message: str) -> None:
    with pytest.raises(ExpressionError) as e:
        parse(text)
    assert message in e.value.message
    assert e.value.column == column
    assert isinstance(e.value, RecipeError)


def test_size_and_nesting_limits() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        parse("1" * (MAX_LENGTH + 1))
    for text in ("(" * 500 + "1" + ")" * 500, "-" * 900 + "1", "u8[" * 300 + "0" + "]" * 300,
                 "+".join(["rax"] * 400), "not " * 300 + "1"):
        with pytest.raises(ExpressionError, match="nested deeper"):
            parse(text)
    assert ev("(" * 40 + "1" + ")" * 40) == 1
    assert ev("+".join(["1"] * 90)) == 90


# ---------------------------------------------------------------- format strings

def _fmt_env() -> FakeEnv:
    return FakeEnv({"rdi": STRING_AT, "rax": 0xBEEF},
                   names={"hits": 3, "arg0": 255, "module": "libc.so.6", "base": 0x7F00})


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("hit {hits}: arg0={arg0:#x}", "hit 3: arg0=0xff"),
        ("{arg0:08x}|{arg0:d}|{arg0:>6}|{arg0:<5}|{arg0:b}", "000000ff|255|   255|255  |11111111"),
        ("{rax:#018x}", "0x000000000000beef"),
        ("name={str(rdi)} {str(rdi):>8}|", "name=passwd   passwd|"),
        ("loaded {module} at {base:#x}", "loaded libc.so.6 at 0x7f00"),
        ("{{literal}} {{{hits}}}", "{literal} {3}"),
        ("no fields", "no fields"),
        ("", ""),
        ('{str(rdi) == "a:b}"}', "0"),            # ':' and '}' inside quotes
        ("{u8[rdi + 0x10]:#x}", "0xff"),
        ("{ arg0 + 1 }", "256"),
    ],
)
def test_format_render(text: str, out: str) -> None:
    assert parse_format(text).render(_fmt_env()) == out


def test_format_names_and_fields() -> None:
    f = parse_format("{hits} {n:#x} {libc.so.6!malloc} {str(rdi)}")
    assert isinstance(f, Format)
    assert f.names == {"n", "libc.so.6!malloc"}
    assert [e.text for e in f.fields] == ["hits", "n", "libc.so.6!malloc", "str(rdi)"]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("a={arg0:zz}", 8, "invalid format spec 'zz'"),
        ("x {str(rdi):#x}", 12, "invalid format spec"),
        ("value {arg0", 6, "unterminated '{'"),
        ("a } b", 2, "single '}'"),
        ("a={}", 3, "empty expression"),
        ("a={1 +}", 6, "unexpected end"),
        ("v={open('x')}", 3, "unknown function 'open'"),
        ("v={x:{y}}", 5, "nested '{'"),
        ("v={x:99999999}", 5, "format width"),
        ("ok {hits} then {u32[rsp}", 23, "expected ']'"),
        ("{__import__('os')}", 1, "not allowed"),
    ],
)
def test_format_errors_have_columns_in_the_whole_string(text: str, column: int, message: str) -> None:
    with pytest.raises(ExpressionError) as e:
        parse_format(text)
    assert message in e.value.message
    assert e.value.column == column


def test_format_spec_mismatch_at_run_time_is_an_evaluation_error() -> None:
    f = parse_format("{module:#x}")        # a name's type is only known at run time
    with pytest.raises(EvaluationError, match="cannot format"):
        f.render(_fmt_env())


# ---------------------------------------------------------------- property tests

_ALPHABET = st.sampled_from(list("0123456789abcdefxu_rsi()[]{}+-*/%&|^~<>=!:.,'\"\\ \t@$?;`#") +
                            ["and", "or", "not", "str(", "u32[", "libc.so.6!", "{{", "}}", "\u00e9"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map("".join) | st.text(max_size=40))
def test_parse_raises_only_expression_error(text: str) -> None:
    for parser in (parse, parse_format):
        try:
            parser(text)
        except ExpressionError as e:
            assert 0 <= e.column <= len(text)


_PREC = {"or": 1, "and": 2, "<": 3, "<=": 3, ">": 3, ">=": 3, "==": 3, "!=": 3,
         "|": 4, "^": 5, "&": 6, "<<": 7, ">>": 7, "+": 8, "-": 8, "*": 9, "/": 9, "%": 9}


class _RefError(Exception):
    pass


def _ref_div(a: int, b: int) -> int:
    if b == 0:
        raise _RefError
    q = a // b
    if q < 0 and q * b != a:   # floor -> truncate toward zero
        q += 1
    return q


def _reference(tree: tuple[Any, ...]) -> int:
    """An independent evaluator of the generated trees, with the documented semantics."""
    if tree[0] == "num":
        return int(tree[1])
    if tree[0] == "un":
        v = _reference(tree[2])
        return {"-": -v, "~": (~v) % 2**64, "not": int(not v)}[tree[1]]
    op, a = tree[1], _reference(tree[2])
    if op == "and":
        return int(bool(a) and bool(_reference(tree[3])))
    if op == "or":
        return int(bool(a) or bool(_reference(tree[3])))
    b = _reference(tree[3])
    if op in ("<<", ">>") and (b < 0 or (op == "<<" and b > 1024)):
        raise _RefError
    if op == "/":
        return _ref_div(a, b)
    if op == "%":
        return a - b * _ref_div(a, b)
    py: dict[str, Any] = {
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "&": lambda: a & b,
        "|": lambda: a | b, "^": lambda: a ^ b, "<<": lambda: a << b, ">>": lambda: a >> b,
        "<": lambda: a < b, "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b,
        "==": lambda: a == b, "!=": lambda: a != b,
    }
    return int(py[op]())


def _render(tree: tuple[Any, ...]) -> str:
    """Source text with only the parentheses precedence requires, so the parser's precedence is tested."""
    if tree[0] == "num":
        return tree[2]
    if tree[0] == "un":
        inner = _render(tree[2])
        if tree[2][0] == "bin":
            inner = f"({inner})"
        return f"not {inner}" if tree[1] == "not" else f"{tree[1]}{inner}"
    op, left, right = tree[1], tree[2], tree[3]
    p = _PREC[op]
    ltext, rtext = _render(left), _render(right)
    if left[0] == "bin" and (_PREC[left[1]] < p or (p == 3 and _PREC[left[1]] == 3)):
        ltext = f"({ltext})"
    if right[0] == "bin" and _PREC[right[1]] <= p:
        rtext = f"({rtext})"
    return f"{ltext} {op} {rtext}"


def _literal(n: int, style: int) -> tuple[str, int, str]:
    text = [str(n), hex(n), oct(n).replace("0o", "0o"), bin(n), f"{n:_}"][style]
    return ("num", n, text)


_leaves = st.builds(_literal, st.integers(0, 2**70) | st.integers(0, 70), st.integers(0, 4))
_trees = st.recursive(
    _leaves,
    lambda sub: st.tuples(st.just("un"), st.sampled_from(["-", "~", "not"]), sub)
    | st.tuples(st.just("bin"), st.sampled_from(sorted(_PREC)), sub, sub),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(_trees)
def test_integer_expressions_match_reference(tree: tuple[Any, ...]) -> None:
    text = _render(tree)
    expr = parse(text)
    try:
        expected = _reference(tree)
    except _RefError:
        with pytest.raises(EvaluationError):
            expr.evaluate(FakeEnv())
        return
    assert expr.evaluate(FakeEnv()) == expected, text


@settings(max_examples=300, deadline=None)
@given(st.integers(-2**70, 2**70), st.integers(-2**70, 2**70) | st.integers(-9, 9),
       st.sampled_from(["/", "%", "+", "-", "*", "&", "|", "^", "<", "==", ">="]))
def test_signed_binary_operations_match_reference(a: int, b: int, op: str) -> None:
    # Negative literals are unary minus, which binds tighter than any binary operator.
    expr = parse(f"{a} {op} {b}")
    try:
        expected = _reference(("bin", op, _literal(a, 0), _literal(b, 0)))
    except _RefError:
        with pytest.raises(EvaluationError):
            expr.evaluate(FakeEnv())
        return
    assert expr.evaluate(FakeEnv()) == expected
