"""Looking at a stopped thread: backtraces, disassembly, the crash record's analysis, int3 placement checks."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..arch import x86_64 as regdefs
from ..errors import DebuggerError, EvaluationError
from ..events import ExceptionCode, ExceptionInfo
from .process import ProcessState

# capstone (analysis.disasm, analysis.fault) and the CFI unwinder (symbols.unwind) are
# imported where first used: a session that never disassembles nor unwinds starts faster.

Reader = Callable[[int, int], bytes]


def _find_module(process: ProcessState) -> Callable[[int], tuple[str, int] | None]:
    def find(pc: int) -> tuple[str, int] | None:
        module = process.modules.find(pc)
        return None if module is None else (module.path, module.base)
    return find


def soft_site_problem(process: ProcessState, address: int) -> str | None:
    """Why an int3 must not go at `address`, or None: it would overwrite data (a
    variable named by mistake), or land inside an instruction (`sym+off` with a
    wrong offset), either of which corrupts the target silently."""
    module = process.modules.find(address)
    image = process.modules.image_of(module) if module is not None else None
    if module is not None and image is not None and hasattr(image, "is_code") \
            and not image.is_code(address - module.base):
        return (f"{process.modules.symbol_text(address)} is not code: a software breakpoint "
                "would overwrite data; watch a variable with `type: hardware` (access: write) "
                "or `type: memory`")
    described = process.modules.describe(address, lines=False)
    symbol = described.get("symbol") or ""
    offset = int(symbol.rsplit("+0x", 1)[1], 16) if "+0x" in symbol else 0
    if 0 < offset <= 4096:
        from ..analysis.disasm import disassemble

        start = address - offset
        for insn in disassemble(process.read, start, offset + 1):
            if insn["address"] == address:
                return None
            if insn["address"] < address < insn["address"] + insn["size"]:
                where = process.modules.symbol_text(insn["address"])
                return (f"{process.modules.symbol_text(address)} is inside the instruction "
                        f"`{insn['text']}` at {where}: an int3 there would corrupt it")
    return None


def _with_inlined(entry: dict[str, Any], calls: tuple[Any, ...]) -> list[dict[str, Any]]:
    """One physical frame as gdb shows it: first a frame per inlined call around its pc
    (innermost first, `"inlined": true`, the same pc), each at the line its code is on,
    then the function itself, at the line of the outermost inlined call."""
    if not calls:
        return [entry]
    out = []
    file, line = entry.get("file"), entry.get("line")
    for call in calls:
        inlined = {k: v for k, v in entry.items() if k not in ("symbol", "file", "line", "method")}
        inlined["symbol"] = call.function
        if file is not None:
            inlined.update(file=file, line=line)
        inlined["inlined"] = True
        out.append(inlined)
        file, line = call.call_file, call.call_line
    outer = {k: v for k, v in entry.items() if k not in ("file", "line")}
    if file is not None and line is not None:
        outer.update(file=file, line=line)
    out.append(outer)
    return out


class Inspector:
    """What actions and crash records see of a stopped thread, beyond its registers."""

    def backtrace(self, process: ProcessState, regs: Mapping[str, int], depth: int) -> list[dict[str, Any]]:
        from ..symbols.unwind import unwind

        frames: list[dict[str, Any]] = []
        # A module map without DWARF readers (the fake backend's, the Windows replay's) has none.
        inlined_at = getattr(process.modules, "inlined_at", None)
        for frame in unwind(regs, process.read, _find_module(process), depth):
            back = frame.lookup_pc != frame.pc
            described = process.modules.describe(frame.pc, return_address=back)
            entry = {"pc": hex(frame.pc), "module": described.get("module"),
                     "offset": hex(described["offset"]) if described.get("offset") is not None else None,
                     "symbol": described.get("symbol")}
            for key in ("file", "line", "separate_debug"):
                if described.get(key) is not None:
                    entry[key] = described[key]
            if frame.method not in ("cfi", "context"):
                entry["method"] = frame.method
            frames += _with_inlined(entry, inlined_at(frame.pc, return_address=back) if inlined_at else ())
        return frames

    def disassemble(self, process: ProcessState, address: int, count: int) -> list[dict[str, Any]]:
        from ..analysis.disasm import disassemble

        found = [{"address": hex(i["address"]), "text": i["text"]}
                 for i in disassemble(process.read, address, count)]
        if not found:
            raise EvaluationError(f"no instructions could be read at {address:#x}")
        return found

    def crash_record(self, process: ProcessState, info: ExceptionInfo,
                     regs: Mapping[str, int] | None) -> dict[str, Any]:
        """The analysis fields of a crash record (SPEC 5), all but its classification and
        hash, which the session adds (analysis.classify) when it classifies."""
        from ..analysis.disasm import around
        from ..analysis.fault import analyze

        rec: dict[str, Any] = {}
        if regs is None:
            return rec
        frames = self.backtrace(process, regs, 32)
        analysis = analyze(info, regs, process.read, [f.get("symbol") or "" for f in frames], None)
        rec.update({k: (hex(v) if isinstance(v, int) and k in ("address", "fault_address") else v)
                    for k, v in analysis.items()})
        if isinstance(rec.get("exception_code"), int):
            rec["exception_code"] = hex(rec["exception_code"])
        # An int3 traps after itself: the instruction at fault is the int3 (info.address).
        pc = info.address if info.code == ExceptionCode.BREAKPOINT else regs["rip"]
        described = process.modules.describe(pc)
        rec["module"] = described.get("module")
        rec["symbol"] = described.get("symbol")
        rec["frames"] = frames
        rec["registers"] = {n: hex(regdefs.read_register(regs, n)) for n in regdefs.GENERAL_REGISTERS}
        try:
            rec["disassembly"] = [
                {"address": hex(i["address"]), "text": i["text"], **({"fault": True} if i.get("current") else {})}
                for i in around(process.read, pc, function_start=_function_start(pc, rec["symbol"]))]
        except DebuggerError:
            rec["disassembly"] = []
        return rec


def _function_start(pc: int, symbol: str | None) -> int | None:
    """Where the function of `name+0x1c` at pc starts: one linear decode from there finds
    the instructions before pc, where guessing from 30 start points takes 30 decodes."""
    if not symbol or "+0x" not in symbol:
        return None
    try:
        return pc - int(symbol.rsplit("+0x", 1)[1], 16)
    except ValueError:
        return None
