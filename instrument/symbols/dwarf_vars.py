"""Variables by name at one stop: parameters and locals in scope at the pc, then globals.

Plain inputs (the module holding the pc and its load bias, the other modules,
the registers by name, a memory reader), so it runs the same under any
backend. A variable whose location DWARF does not give at this pc is an
error saying it is optimized out, never a value read from the wrong place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..errors import EvaluationError
from ..expr.values import CastType, Value
from .cfi import ModuleCFI, module_cfi
from .cfi_rules import DWARF_REGS, UnwindStop, apply_row, eval_cfa
from .dwarf_info import ModuleDwarf, Scope, Variable, dwarf_for
from .dwarf_loc import FrameInputs, OptimizedOut, Place, evaluate, read_place, register_name
from .dwarf_types import CType
from .dwarf_values import DwarfCastType, Reader, SymbolValue, TypedValue
from .elf import ImageError, open_image

_ARG_REGS = (5, 4, 1, 2, 8, 9)       # SysV: rdi rsi rdx rcx r8 r9
_NONE = object()


class _ByNumber(Mapping[int, int]):
    """The stop's registers by DWARF number, read from the by-name mapping only when asked
    (a backend's register set may decode each one on access)."""

    def __init__(self, regs: Mapping[str, int]) -> None:
        self._regs = regs

    def __getitem__(self, num: int) -> int:
        name = DWARF_REGS.get(num)
        if name is None or name not in self._regs:
            raise KeyError(num)
        return self._regs[name]

    def __contains__(self, num: object) -> bool:
        name = DWARF_REGS.get(num) if isinstance(num, int) else None
        return name is not None and name in self._regs

    def __iter__(self) -> Iterator[int]:
        return iter([n for n, name in DWARF_REGS.items() if name in self._regs])

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class ModuleRef:
    path: str
    bias: int          # runtime address - link-time address


FindModule = Callable[[int], "ModuleRef | None"]


class FrameVariables:
    """The variables one stopped frame can name; see the module docstring."""

    def __init__(self, pc: int | None, regs: Mapping[int, int] | None, read: Reader, find_module: FindModule,
                 search: Sequence[ModuleRef], depth: int = 0, opened: dict[Any, Any] | None = None) -> None:
        self.pc, self.regs, self.read, self.find_module = pc, regs, read, find_module
        self.search, self.depth = search, depth
        # What this process's modules opened (their DWARF, CFI), kept by the caller for the
        # process's life: a stop asks again on every hit, and a file cache stats each time.
        self.opened: dict[Any, Any] = {} if opened is None else opened
        self.module = find_module(pc) if pc is not None else None
        self.dwarf = self._dwarf(self.module.path) if self.module is not None else None
        self.link_pc = pc - self.module.bias if pc is not None and self.module is not None else 0
        self._scope: Any = _NONE

    @classmethod
    def from_names(cls, regs: Mapping[str, int] | None, read: Reader, find_module: FindModule,
                   search: Sequence[ModuleRef], opened: dict[Any, Any] | None = None) -> FrameVariables:
        """For a stop: registers by name (rip, rsp, ...) as the backend gives them."""
        if regs is None:
            return cls(None, None, read, find_module, search, opened=opened)
        return cls(regs.get("rip"), _ByNumber(regs), read, find_module, search, opened=opened)

    def _dwarf(self, path: str) -> ModuleDwarf | None:
        key = ("dwarf", path)
        if key not in self.opened:
            self.opened[key] = dwarf_for(path)
        found: ModuleDwarf | None = self.opened[key]
        return found

    # -- what is in scope -------------------------------------------------------------------
    def scope(self) -> Scope | None:
        if self._scope is _NONE:
            self._scope = self.dwarf.scope_at(self.link_pc) if self.dwarf is not None and self.regs else None
        scope: Scope | None = self._scope
        return scope

    def where(self) -> str:
        scope = self.scope()
        if scope is None:
            return f"{self.pc or 0:#x}"
        offset = self.link_pc - scope.low_pc
        return f"{scope.function}+{offset:#x}" if offset else scope.function

    def not_found(self) -> str:
        """Why a name is no variable here, for the error that says it is unknown."""
        if self.module is None:
            return f"no module holds the pc {self.pc or 0:#x}"
        name = self.module.path.rsplit("/", 1)[-1]
        if self.dwarf is None:
            return f"no variable or symbol of that name ({name} has no DWARF at {self.pc or 0:#x})"
        if self.scope() is None:
            return f"no variable or symbol of that name (no DWARF for the function at {self.pc or 0:#x} in {name})"
        return f"not in scope at {self.where()}, and no global or symbol of that name"

    def names(self, params: bool) -> list[str]:
        """The parameters (in order) or the locals (innermost first) in scope here."""
        scope = self.scope()
        if scope is None:
            raise EvaluationError(f"no debug information for the function at {self.pc or 0:#x}")
        if params:
            return [v.name for v in scope.params]
        seen: set[str] = set()
        out = []
        for v in scope.variables:
            if not v.is_param and v.name not in seen:
                seen.add(v.name)
                out.append(v.name)
        return out

    def lookup(self, name: str) -> Value | None:
        """The variable `name` (a local or parameter here, else a global or static);
        None when no DWARF knows it; raises EvaluationError when it has no value here."""
        scope = self.scope()
        if scope is not None:
            for var in scope.variables:
                if var.name == name:
                    return self._value(var, scope)
        return self.global_value(name)

    def global_value(self, name: str) -> Value | None:
        for module in self._modules():
            dwarf = self._dwarf(module.path)
            var = dwarf.global_named(name) if dwarf is not None else None
            if var is not None:
                address = var.location[0].args[0] + module.bias
                return SymbolValue(TypedValue(var.type, self.read, address=address))
        return None

    def _modules(self) -> list[ModuleRef]:
        first = [self.module] if self.module is not None else []
        return first + [m for m in self.search if m != self.module]

    def type_named(self, text: str) -> CastType | None:
        for module in self._modules():
            dwarf = self._dwarf(module.path)
            ctype = dwarf.type_named(text) if dwarf is not None else None
            if ctype is not None:
                return DwarfCastType(ctype, self.read)
        from .dwarf_types import c_base_type, pointer_to, split_pointer
        base, depth = split_pointer(text)
        found = c_base_type(base)
        if found is None:
            return None
        for _ in range(depth):
            found = pointer_to(None if found.kind == "void" else found)
        return DwarfCastType(found, self.read)

    # -- one variable's value ------------------------------------------------------------------
    def _value(self, var: Variable, scope: Scope) -> Value:
        if var.location is None:
            raise OptimizedOut(f"'{var.name}' is optimized out at {self.where()}")
        if isinstance(var.location, bytes):        # DW_AT_const_value
            return TypedValue(var.type, self.read, data=(var.location + bytes(var.type.size))[:var.type.size])
        ops = var.location
        if var.is_list:
            ops = next((o for lo, hi, o in var.location if lo <= self.link_pc < hi), None)
            if ops is None:
                raise OptimizedOut(f"'{var.name}' is optimized out at {self.where()}")
        inputs = self._inputs(scope)
        try:
            place = evaluate(ops, inputs)
            if (var.is_param and not var.is_list and place.kind == "memory" and not var.static
                    and self._in_prologue(scope)):
                # -O0 code keeps a parameter in its stack slot, which the prologue has
                # not written yet: at the entry the ABI's register still holds it.
                return self._entry_argument(var, scope)
            if place.kind == "memory":
                return TypedValue(var.type, self.read, address=place.address)
            return TypedValue(var.type, self.read, data=read_place(place, var.type.size, inputs))
        except OptimizedOut as e:
            raise OptimizedOut(f"'{var.name}' is {e} at {self.where()}") from None
        except (EvaluationError, UnwindStop, IndexError) as e:
            raise EvaluationError(f"'{var.name}' at {self.where()}: {e or 'bad DWARF location'}") from None

    def _inputs(self, scope: Scope) -> FrameInputs:
        bias = self.module.bias if self.module is not None else 0
        return FrameInputs(self.regs or {}, self.read, lambda: self._frame_base(scope), self._cfa,
                           lambda sub: self._entry_value(sub, scope), bias)

    def _frame_base(self, scope: Scope) -> int:
        ops = scope.frame_base
        if scope.frame_base_is_list:
            ops = next((o for lo, hi, o in scope.frame_base if lo <= self.link_pc < hi), None)
        if not ops:
            raise EvaluationError("the function's frame base is unknown here")
        place = evaluate(ops, FrameInputs(self.regs or {}, self.read, _no_base, self._cfa, _no_entry,
                                          self.module.bias if self.module else 0))
        if place.kind == "memory":
            return place.address
        if place.kind == "register":
            return (self.regs or {}).get(place.register, 0)
        raise EvaluationError("unsupported frame base")

    def _cfa(self) -> int:
        row = self._cfi_row()
        try:
            return eval_cfa(row[0]["cfa"], self.regs or {}, self.read)
        except UnwindStop as e:
            raise EvaluationError(f"the frame's CFA: {e}") from None

    def _cfi_row(self) -> tuple[Any, int]:
        cfi: ModuleCFI | None = None
        if self.module is not None:
            key = ("cfi", self.module.path)
            if key not in self.opened:
                self.opened[key] = module_cfi(self.module.path)
            cfi = self.opened[key]
        row = cfi.row(self.link_pc) if cfi is not None else None
        if row is None:
            raise EvaluationError(f"no call frame information at {self.pc or 0:#x}")
        return row

    def _in_prologue(self, scope: Scope) -> bool:
        return scope.low_pc <= self.link_pc < _prologue_end(self.module.path if self.module else "", scope.low_pc)

    def _entry_argument(self, var: Variable, scope: Scope) -> Value:
        slot = 0
        for p in scope.params:
            if not _integer_class(p.type):
                break
            if p is var or p.name == var.name:
                if slot < len(_ARG_REGS) and self.regs is not None and _ARG_REGS[slot] in self.regs:
                    data = self.regs[_ARG_REGS[slot]].to_bytes(8, "little")[:var.type.size]
                    return TypedValue(var.type, self.read, data=data)
                break
            slot += 1
        raise OptimizedOut(f"'{var.name}' is not set up yet in the prologue of {scope.function} "
                           f"(break after it, on its first line)")

    def _entry_value(self, sub: Sequence[Any], scope: Scope) -> int:
        """DW_OP_entry_value(DW_OP_regN): register N as it was when the function was entered."""
        if len(sub) != 1 or not sub[0].op_name.startswith("DW_OP_reg") or not sub[0].op_name[9:].isdigit():
            raise OptimizedOut("optimized out (an entry value of a memory location)")
        reg = int(sub[0].op_name[9:])
        if self.link_pc == scope.low_pc and self.regs is not None and reg in self.regs:
            return self.regs[reg]
        # Elsewhere, as gdb does: the caller's call site may say what it passed.
        value = self._caller_call_value(reg)
        if value is None:
            raise OptimizedOut(f"optimized out (its value at entry, in {register_name(reg)}, is lost)")
        return value

    def _caller_call_value(self, reg: int) -> int | None:
        if self.depth > 2 or self.regs is None:
            return None
        try:
            row, ra_column = self._cfi_row()
            _cfa, caller = apply_row(row, ra_column, self.regs, self.read)
        except (EvaluationError, UnwindStop):
            return None
        return_pc = caller.get(16)
        module = self.find_module(return_pc) if return_pc is not None else None
        dwarf = self._dwarf(module.path) if module is not None else None
        if return_pc is None or module is None or dwarf is None:
            return None
        found = dwarf.call_site_values(return_pc - module.bias)
        if found is None or reg not in found[1]:
            return None
        outer = FrameVariables(return_pc, caller, self.read, self.find_module, self.search, self.depth + 1,
                               self.opened)
        outer_scope = outer.scope()
        if outer_scope is None:
            return None
        try:
            place = evaluate(found[1][reg], outer._inputs(outer_scope))
            return int.from_bytes(read_place(place, 8, outer._inputs(outer_scope)), "little") \
                if place.kind != "memory" else place.address
        except (EvaluationError, UnwindStop, IndexError):
            return None


def _no_base() -> int:
    raise EvaluationError("DW_OP_fbreg inside a frame base")


def _no_entry(sub: Sequence[Any]) -> int:
    raise EvaluationError("DW_OP_entry_value inside a frame base")


def _integer_class(ctype: CType) -> bool:
    """Passed in a general register by the SysV ABI (and one of them)."""
    return ctype.is_scalar and ctype.size <= 8 and ctype.encoding != "float"


_PROLOGUES: dict[tuple[str, int], int] = {}


def _prologue_end(path: str, low_pc: int) -> int:
    """The address of the function's second source line, where gdb puts `break f`:
    the line table's first row past the entry whose line differs from the entry's."""
    key = (path, low_pc)
    if key in _PROLOGUES:
        return _PROLOGUES[key]
    end = low_pc
    try:
        lines = open_image(path).lines
        first = lines.source_line(low_pc)
        for address in lines.rows_after(low_pc, 64):
            where = lines.source_line(address)
            if where is None:
                break
            if where != first:
                end = address
                break
    except ImageError:
        pass
    _PROLOGUES[key] = end
    return end


__all__ = ["FrameVariables", "ModuleRef", "Place"]
