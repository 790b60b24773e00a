"""Rust symbol demangling, both manglings, in the form gdb and rustc-demangle's `{:#}` print.

- legacy (`_ZN4core3fmt5write17h5c4e6e7d8d2b2f1aE`): Itanium-shaped nested names with
  `$LT$`-style escapes and a trailing `h<16 hex>` hash, which is left out;
- v0 (`_RNvCs1234_7mycrate3foo`, RFC 2603): paths, generic arguments, types, constants
  and back-references; crate disambiguators are left out (`mycrate::foo`).

Our own because binutils' c++filt prints v0 with disambiguators (`mycrate[3c1c0]::foo`)
and legacy with the hash (it passes DMGL_VERBOSE), unlike gdb, and may be missing
altogether; rustfilt is seldom installed. Pure string work, no I/O.
"""

from __future__ import annotations

import re

_LEGACY = re.compile(r"^_ZN(?P<body>.*)E(?:\.[\w.$]+)?$")
_HASH = re.compile(r"^h[0-9a-f]{16}$")
_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}
_MAX_DEPTH = 200       # recursion bound: a hostile name must not blow the stack

_BASIC = {
    "a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
    "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128", "s": "i16",
    "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_",
}
_SIGNED = {"a", "s", "l", "x", "n", "i"}
_UNSIGNED = {"h", "t", "m", "y", "o", "j"}


def is_rust_mangled(name: str) -> bool:
    return name.startswith("_R") or _legacy_parts(name) is not None


def demangle_rust(name: str) -> str | None:
    """The demangled form of a Rust symbol, or None when `name` is not one (or is malformed)."""
    if name.startswith("_R"):
        return _demangle_v0(name)
    parts = _legacy_parts(name)
    if parts is None:
        return None
    return "::".join(_unescape(p) for p in parts[:-1])


# -- legacy --------------------------------------------------------------------------

def _legacy_parts(name: str) -> list[str] | None:
    m = _LEGACY.match(name)
    if m is None:
        return None
    body, parts, i = m.group("body"), [], 0
    while i < len(body):
        j = i
        while j < len(body) and body[j].isdigit():
            j += 1
        if j == i:
            return None
        length = int(body[i:j])
        if length == 0 or j + length > len(body):
            return None
        parts.append(body[j:j + length])
        i = j + length
    # The hash component is what tells Rust from a C++ variable `ns::x` (`_ZN2ns1xE`).
    if len(parts) < 2 or not _HASH.match(parts[-1]):
        return None
    return parts


def _unescape(part: str) -> str:
    if part.startswith("_$"):
        part = part[1:]
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "$":
            end = part.find("$", i + 1)
            code = part[i + 1:end] if end > 0 else ""
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
            elif code.startswith("u") and len(code) > 1 and all(h in "0123456789abcdef" for h in code[1:]):
                out.append(chr(int(code[1:], 16)))
            else:
                return part       # not an escape we know: the component as it is
            i = end + 1
        elif part.startswith("..", i):
            out.append("::")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# -- v0 ------------------------------------------------------------------------------

class _Malformed(Exception):
    pass


def _demangle_v0(name: str) -> str | None:
    # A `.llvm.1234` suffix (LTO) or other vendor suffix follows the symbol after a '.'.
    core = name.split(".", 1)[0]
    try:
        parser = _V0(core[2:])
        if parser.peek().isdigit():       # encoding version: only 0 exists so far
            return None
        text = parser.path(in_value=True)
        # What remains is the instantiating crate (a path), not printed.
        return text
    except (_Malformed, IndexError, ValueError, RecursionError):
        return None


class _V0:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.depth = 0
        self.bound = 0            # lifetimes bound by the enclosing binders

    # -- lexing --
    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        if self.i >= len(self.s):
            raise _Malformed()
        c = self.s[self.i]
        self.i += 1
        return c

    def eat(self, c: str) -> bool:
        if self.peek() == c:
            self.i += 1
            return True
        return False

    def base62(self) -> int:
        if self.eat("_"):
            return 0
        value = 0
        while True:
            c = self.next()
            if c == "_":
                return value + 1
            if c.isdigit():
                d = ord(c) - 48
            elif "a" <= c <= "z":
                d = ord(c) - 97 + 10
            elif "A" <= c <= "Z":
                d = ord(c) - 65 + 36
            else:
                raise _Malformed()
            value = value * 62 + d

    def opt_base62(self, tag: str) -> int:
        return self.base62() + 1 if self.eat(tag) else 0

    def decimal(self) -> int:
        # A leading 0 is the whole number: `011FIRST` is an empty name, then `11FIRST...`.
        if self.eat("0"):
            return 0
        start = self.i
        while self.peek().isdigit():
            self.i += 1
        if start == self.i:
            raise _Malformed()
        return int(self.s[start:self.i])

    def ident(self) -> str:
        self.opt_base62("s")       # disambiguator, not printed
        return self.undisambiguated()

    def undisambiguated(self) -> str:
        puny = self.eat("u")
        length = self.decimal()
        self.eat("_")
        raw = self.s[self.i:self.i + length]
        if len(raw) != length:
            raise _Malformed()
        self.i += length
        if not puny:
            return raw
        # v0 punycode uses '_' where RFC 3492 uses '-' as the basic/extended delimiter.
        basic, sep, extended = raw.rpartition("_")
        encoded = f"{basic}-{extended}" if sep else f"-{raw}" if raw else raw
        try:
            return encoded.encode("ascii").decode("punycode")
        except (UnicodeError, ValueError) as e:
            raise _Malformed() from e

    def backref(self) -> _V0:
        """After a 'B': a parser at the earlier position the back-reference names."""
        at_b = self.i - 1
        target = self.base62()
        if target >= at_b:             # must point backwards
            raise _Malformed()
        other = _V0(self.s)
        other.i, other.depth, other.bound = target, self.depth, self.bound
        return other

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Malformed()

    # -- grammar --
    def path(self, in_value: bool) -> str:
        self._enter()
        try:
            tag = self.next()
            if tag == "C":
                return self.ident()
            if tag == "M":
                self.opt_base62("s")
                self.path(in_value=False)          # the impl's own path: not printed
                return f"<{self.type()}>"
            if tag == "X":
                self.opt_base62("s")
                self.path(in_value=False)
                ty = self.type()
                return f"<{ty} as {self.path(in_value=False)}>"
            if tag == "Y":
                ty = self.type()
                return f"<{ty} as {self.path(in_value=False)}>"
            if tag == "N":
                ns = self.next()
                prefix = self.path(in_value)
                disambiguator = self.opt_base62("s")
                name = self.undisambiguated()
                if ns.isupper():
                    kind = {"C": "closure", "S": "shim"}.get(ns, ns)
                    label = f"{kind}:{name}" if name else kind
                    return f"{prefix}::{{{label}#{disambiguator}}}"
                return f"{prefix}::{name}" if name else prefix
            if tag == "I":
                prefix = self.path(in_value)
                args = []
                while not self.eat("E"):
                    args.append(self.generic_arg())
                return f"{prefix}{'::' if in_value else ''}<{', '.join(args)}>"
            if tag == "B":
                return self.backref().path(in_value)
            raise _Malformed()
        finally:
            self.depth -= 1

    def generic_arg(self) -> str:
        if self.peek() == "L":
            self.next()
            return self.lifetime(self.base62())
        if self.eat("K"):
            return self.const()
        return self.type()

    def lifetime(self, index: int) -> str:
        if index == 0:
            return "'_"
        depth = self.bound - index
        if depth < 0:
            raise _Malformed()
        return f"'{chr(97 + depth)}" if depth < 26 else f"'_{depth}"

    def binder(self) -> str:
        count = self.opt_base62("G")
        if not count:
            return ""
        names = [f"'{chr(97 + self.bound + k)}" if self.bound + k < 26 else f"'_{self.bound + k}"
                 for k in range(count)]
        self.bound += count
        return f"for<{', '.join(names)}> "

    def type(self) -> str:
        self._enter()
        try:
            c = self.peek()
            if c in _BASIC:
                self.i += 1
                return _BASIC[c]
            self.i += 1
            if c == "A":
                ty = self.type()
                return f"[{ty}; {self.const()}]"
            if c == "S":
                return f"[{self.type()}]"
            if c == "T":
                items = []
                while not self.eat("E"):
                    items.append(self.type())
                return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
            if c in ("R", "Q"):
                lifetime = ""
                if self.peek() == "L":
                    self.next()
                    index = self.base62()
                    lifetime = (self.lifetime(index) + " ") if index else ""
                return f"&{lifetime}{'mut ' if c == 'Q' else ''}{self.type()}"
            if c == "P":
                return f"*const {self.type()}"
            if c == "O":
                return f"*mut {self.type()}"
            if c == "F":
                return self.fn_sig()
            if c == "D":
                return self.dyn_bounds()
            if c == "B":
                return self.backref().type()
            self.i -= 1
            return self.path(in_value=False)
        finally:
            self.depth -= 1

    def fn_sig(self) -> str:
        saved = self.bound
        prefix = self.binder()
        if self.eat("U"):
            prefix += "unsafe "
        if self.eat("K"):
            abi = "C" if self.eat("C") else self.undisambiguated().replace("_", "-")
            prefix += f'extern "{abi}" '
        params = []
        while not self.eat("E"):
            params.append(self.type())
        ret = self.type()
        self.bound = saved
        return f"{prefix}fn({', '.join(params)})" + ("" if ret == "()" else f" -> {ret}")

    def dyn_bounds(self) -> str:
        saved = self.bound
        prefix = self.binder()
        traits = []
        while not self.eat("E"):
            trait = self.path(in_value=False)
            bindings = []
            while self.eat("p"):
                name = self.undisambiguated()
                bindings.append(f"{name} = {self.type()}")
            if bindings:
                trait = (trait[:-1] + ", " if trait.endswith(">") else trait + "<") + ", ".join(bindings) + ">"
            traits.append(trait)
        if self.next() != "L":
            raise _Malformed()
        index = self.base62()
        text = f"dyn {prefix}{' + '.join(traits)}"
        if index:
            text += f" + {self.lifetime(index)}"
        self.bound = saved
        return text

    def const(self) -> str:
        if self.eat("p"):
            return "_"
        if self.peek() == "B":
            self.next()
            return self.backref().const()
        ty = self.next()
        negative = ty in _SIGNED and self.eat("n")
        start = self.i
        while self.peek() in "0123456789abcdef" and self.peek():
            self.i += 1
        digits = self.s[start:self.i]
        if self.next() != "_":
            raise _Malformed()
        value = int(digits, 16) if digits else 0
        if ty in _SIGNED or ty in _UNSIGNED:
            return f"-{value}" if negative else str(value)
        if ty == "b":
            return {0: "false", 1: "true"}.get(value, str(value))
        if ty == "c":
            return repr(chr(value)) if value < 0x110000 else str(value)
        raise _Malformed()
