"""`instrument validate --target`: where each breakpoint of a recipe lands in a program, for a person."""

from __future__ import annotations

from ..compiler.resolve import ANY_LIBRARY, BreakpointResolution, ProgramResolution


def _where(bp: BreakpointResolution, pie: bool) -> str:
    if bp.module == ANY_LIBRARY:
        return "deferred until the library that defines this import loads"
    if bp.module is not None:
        note = "" if bp.needed is not False else " (not a DT_NEEDED library: only if the program dlopen()s it)"
        return f"deferred until {bp.module} loads{note}"
    if bp.address is None:
        return "resolved at run time (the address depends on registers or memory)"
    return f"{bp.address:#x}" + (" (link-time; + the load base, PIE)" if pie else "")


def format_resolution(recipe_file: str, res: ProgramResolution) -> str:
    """One header line, then one line per breakpoint: id, kind, expression, where it lands."""
    build = res.build_id or "no build id"
    lines = [f"{recipe_file}: ok against {res.program} ({'PIE' if res.pie else 'fixed address'}, build id {build})"]
    if not res.breakpoints:
        lines.append("  no breakpoints")
    width = max((len(bp.id) for bp in res.breakpoints), default=0)
    for bp in res.breakpoints:
        lines.append(f"  {bp.id:<{width}}  {bp.type:<8}  {bp.at}  ->  {_where(bp, res.pie)}")
    deferred = sum(1 for bp in res.breakpoints if bp.module is not None)
    if deferred:
        lines.append(f"  {deferred} of {len(res.breakpoints)} deferred; libraries needed: "
                     + (", ".join(res.needed) or "none"))
    return "\n".join(lines) + "\n"
