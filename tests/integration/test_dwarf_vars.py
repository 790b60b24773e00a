"""Variables and types by name from DWARF (issue 15), on real programs built at -O0 and -O2:
the values logged by name equal what the program prints itself, hit by hit; where a value
is optimized out the record says so and gives none; gdb, asked for the same expressions,
prints the same values."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TARGETS, run_cli, run_recipe_jsonl

BUILDS = ["dwarf_vars", "dwarf_vars-O2"]
COLORS = {0: "RED", 5: "GREEN", 6: "BLUE"}
HEADER = "version: 1\nname: dwarf\ndescription: variables by name\n"


def marker_line(source: str, marker: str) -> int:
    lines = (TARGETS / source).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if f"LINE:{marker}" in text)


def printed(stdout: str, word: str) -> list[dict[str, str]]:
    """The `word k=v k=v ...` lines the program printed, as dicts."""
    return [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in stdout.splitlines()
            if line.startswith(word + " ")]


def hits(records: list[dict], bp: str) -> list[dict]:
    return [r for r in records if r["event"] == "breakpoint" and r["id"] == bp]


def recipe(at: str, log: str) -> str:
    return HEADER + f"breakpoints:\n  - id: b\n    at: {at}\n    actions:\n      - log: {log}\n"


@pytest.mark.parametrize("build", BUILDS)
def test_parameters_globals_members_and_elements_equal_what_the_program_prints(targets, tmp_path, build):
    names = ["scale", "total", "tag", "counter", "req->len", "req->vals[2]", "table[3]", "req->path",
             "req->color", "s_calls", "req"]
    proc, records = run_recipe_jsonl(tmp_path, recipe("report", "{vars: [%s]}" % ", ".join(f'"{n}"' for n in names)),
                                     targets[build], "5")
    assert proc.returncode == 0, proc.stderr
    seen = printed(proc.stdout, "report")
    got = hits(records, "b")
    assert len(seen) == len(got) == 5
    for i, (p, r) in enumerate(zip(seen, got)):
        v = r["vars"]
        assert "errors" not in r, r["errors"]       # at a function's entry every parameter is in its register
        assert v["scale"] == int(p["scale"]) and v["total"] == int(p["total"]) and v["tag"] == int(p["tag"])
        assert v["counter"] == int(p["counter"])
        assert v["req->len"] == int(p["len"]) and v["req->vals[2]"] == int(p["vals2"])
        assert v["table[3]"] == int(p["table3"])
        assert v["req->path"]["string"] == p["path"] and v["req->path"]["pointer"].startswith("0x")
        assert v["req->color"] == COLORS[int(p["color"])]
        assert v["s_calls"] == i                  # a file static, read before this call adds one
        # The struct through the pointer, as an object: the same members.
        assert v["req"]["value"]["len"] == int(p["len"]) and v["req"]["value"]["vals"][2] == int(p["vals2"])
        assert v["req"]["value"]["path"]["string"] == p["path"]


@pytest.mark.parametrize("build", BUILDS)
def test_a_local_is_its_value_or_reported_optimized_out_never_wrong(targets, tmp_path, build):
    line = marker_line("dwarf_vars.c", "call")
    proc, records = run_recipe_jsonl(
        tmp_path, recipe(f"dwarf_vars.c:{line}", "{vars: [total, scale, req->len], locals: true, args: true}"),
        targets[build], "6")
    assert proc.returncode == 0, proc.stderr
    seen = printed(proc.stdout, "process")
    reports = printed(proc.stdout, "report")
    got = hits(records, "b")
    assert len(seen) == len(got) == 6
    given = 0
    for p, q, r in zip(seen, reports, got):
        for name, value, truth in (("total", r["vars"]["total"], int(p["total"])),
                                   ("scale", r["vars"]["scale"], int(q["scale"])),
                                   ("req->len", r["vars"]["req->len"], int(q["len"])),
                                   ("total", r["locals"]["total"], int(p["total"]))):
            if value is None:
                assert any(f"'{name}' is optimized out" in e or name.startswith("req") for e in r["errors"]), r
            else:
                assert value == truth, (name, r)
                given += 1
        assert list(r["args"]) == ["req", "scale"]
    if build == "dwarf_vars":
        assert given == 4 * 6                    # -O0 keeps everything in its stack slot


def test_at_O2_a_value_not_yet_computed_is_optimized_out(targets, tmp_path):
    proc, records = run_recipe_jsonl(tmp_path, recipe("process", "{vars: [total, scale]}"),
                                     targets["dwarf_vars-O2"], "3")
    assert proc.returncode == 0, proc.stderr
    for r in hits(records, "b"):
        assert r["vars"]["total"] is None and isinstance(r["vars"]["scale"], int)
        assert r["errors"] == ["log vars: 'total' is optimized out at process"]


def test_expressions_name_variables_in_conditions_and_messages(targets, tmp_path):
    text = HEADER + """breakpoints:
  - id: b
    at: report
    when: "req->color == 5 and scale > 2"
    actions:
      - log: "len={req->len} path={str(req->path)} first={*req->path:#x} size={sizeof(struct req)} {req->color}"
      - log: {vars: ["(struct req *)req", "&table[1]", "*names[1]", "sizeof(counter)", "(char)(scale + 300)"]}
"""
    proc, records = run_recipe_jsonl(tmp_path, text, targets["dwarf_vars"], "8")
    assert proc.returncode == 0, proc.stderr
    got = hits(records, "b")
    expected = [p for p in printed(proc.stdout, "report") if p["color"] == "5" and int(p["scale"]) > 2]
    assert len(got) == len(expected) >= 2
    for p, r in zip(expected, got):
        assert r["message"] == f"len={p['len']} path={p['path']} first={ord(p['path'][0]):#x} size=48 GREEN"
        v = r["vars"]
        assert v["(struct req *)req"]["value"]["len"] == int(p["len"])
        assert v["&table[1]"]["value"] == -1 and v["*names[1]"] == ord("o") and v["sizeof(counter)"] == 8
        assert v["(char)(scale + 300)"] == (int(p["scale"]) + 300 + 128) % 256 - 128


def test_text_records_show_variables_as_c_writes_them(targets, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(recipe("report", "{vars: [req->len, req->path, req->color], args: true}") + "    limit: 1\n")
    proc = run_cli("run", str(path), "--", targets["dwarf_vars"], "1")
    assert proc.returncode == 0, proc.stderr
    assert "    req->len = 1\n" in proc.stdout
    assert re.search(r"    req->path = 0x[0-9a-f]+ 'zero'\n", proc.stdout)
    assert "    req->color = RED\n" in proc.stdout and "    scale = 2\n" in proc.stdout
    assert re.search(r"    req = 0x[0-9a-f]+ -> \{path = 0x[0-9a-f]+ 'zero', len = 1, ", proc.stdout)


def test_an_unknown_variable_is_a_recipe_error_and_one_out_of_scope_a_record_error(targets, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(recipe("report", "{vars: [scale, nosuch]}"))
    proc = run_cli("run", str(path), "--", targets["dwarf_vars"], "1")
    assert proc.returncode == 2
    assert "unknown name 'nosuch'" in proc.stderr and "Traceback" not in proc.stderr
    # `sum` is main's local: known to the program, not in scope in report.
    proc, records = run_recipe_jsonl(tmp_path, recipe("report", "{vars: [sum, scale, req->nosuch]}"),
                                     targets["dwarf_vars"], "1")
    assert proc.returncode == 0, proc.stderr
    (r,) = hits(records, "b")
    assert r["vars"] == {"sum": None, "scale": 2, "req->nosuch": None}
    assert any("unknown name 'sum'" in e for e in r["errors"])
    assert any("struct req has no member 'nosuch' (members: path, len, flags, color, next, vals)" in e
               for e in r["errors"])


def test_types_bit_fields_unions_nested_arrays_and_typedefs(targets, tmp_path):
    names = ["s->flags.level", "s->flags.delta", "s->word.half[1]", "s->mode", "s->grid[1][2]", "s->name",
             "s->corners[2]", "s->visible", "s->bias", "s->alpha", "s->scale", "sizeof(point_t)",
             "sizeof s->grid", "s->word.bytes"]
    proc, records = run_recipe_jsonl(tmp_path, recipe("inspect", "{vars: [%s]}" % ", ".join(f'"{n}"' for n in names)),
                                     targets["dwarf_types"])
    assert proc.returncode == 0, proc.stderr
    first, second = (r["vars"] for r in hits(records, "b"))
    assert first == {"s->flags.level": 5, "s->flags.delta": -3, "s->word.half[1]": 0x1234, "s->mode": "MODE_ON",
                     "s->grid[1][2]": 6, "s->name": "triangle", "s->corners[2]": {"x": 2, "y": -3},
                     "s->visible": True, "s->bias": -7, "s->alpha": 200, "s->scale": 1.5, "sizeof(point_t)": 8,
                     "sizeof s->grid": 24, "s->word.bytes": [0x78, 0x56, 0x34, 0x12]}
    assert second["s->flags.delta"] == 7 and second["s->word.half[1]"] == -2 and second["s->mode"] == "MODE_AUTO"
    assert second["s->grid[1][2]"] == -6 and second["s->visible"] is False and second["s->scale"] == -0.25
    modes = {0: "MODE_OFF", 3: "MODE_ON", 4: "MODE_AUTO"}
    lines = [dict(kv.split("=") for kv in line.split()[3:]) for line in proc.stdout.splitlines()
             if line.startswith("inspect ")]
    assert len(lines) == 2
    for p, v in zip(lines, (first, second)):        # and what the program printed, field by field
        assert (v["s->flags.level"], v["s->flags.delta"], v["s->word.half[1]"], v["s->grid[1][2]"]) == \
            (int(p["level"]), int(p["delta"]), int(p["half1"]), int(p["grid12"]))
        assert v["s->mode"] == modes[int(p["mode"])]


# -- gdb as the oracle ------------------------------------------------------------------------

ORACLE = [
    ("dwarf_vars", "report", ["3"], ["scale", "total", "tag", "counter", "req->len", "req->vals[2]", "table[3]",
                                     "req->path", "req->color", "req->next", "sizeof(struct req)"]),
    ("dwarf_vars-O2", "report", ["3"], ["scale", "total", "tag", "counter", "req->len", "req->vals[2]",
                                        "table[3]", "req->path", "req->color", "names[2]"]),
    ("dwarf_types", "inspect", [], ["index", "s->flags.level", "s->flags.delta", "s->flags.rest", "s->word.u",
                                    "s->word.half[0]", "s->mode", "s->grid[1][2]", "s->corners[1].x",
                                    "s->visible", "s->bias", "s->alpha", "s->scale", "shapes[1].word.half[1]",
                                    "sizeof(point_t)"]),
]


def gdb_values(program: str, function: str, args: list[str], exprs: list[str], stops: int) -> list[list[str]]:
    cmd = ["gdb", "-nx", "-batch", "-ex", "set debuginfod enabled off", "-ex", "set pagination off",
           "-ex", f"break {function}", "-ex", "run " + " ".join(args)]
    for stop in range(stops):
        cmd += [a for e in exprs for a in ("-ex", f"print {e}")]
        cmd += ["-ex", "continue"]
    out = subprocess.run([*cmd, program], capture_output=True, text=True, timeout=120).stdout
    values = [m.group(1) for m in re.finditer(r"^\$\d+ = (.*)$", out, re.M)]
    assert len(values) == stops * len(exprs), out
    return [values[i * len(exprs):(i + 1) * len(exprs)] for i in range(stops)]


def as_gdb(value: object) -> str:
    """Our JSON value the way gdb's print writes it (the parts gdb and we both show)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and "pointer" in value:
        if "string" in value:
            return f'"{value["string"]}"'
        return value["pointer"] if value["pointer"] == "0x0" else "<pointer>"
    return str(value)


def from_gdb(text: str) -> str:
    text = re.sub(r"^\([^)]*\) ", "", text)              # `(struct req *) 0x0`
    if re.match(r"^0x[0-9a-f]+ \"", text):              # a char *: the string
        return text.split(" ", 1)[1]
    if re.match(r"^0x[0-9a-f]+$", text) and text != "0x0":
        return "<pointer>"                               # ASLR: addresses differ between the runs
    return re.sub(r" '.*'$", "", text)                   # a char: `97 'a'`


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
@pytest.mark.parametrize(("build", "function", "args", "exprs"), ORACLE, ids=[o[0] for o in ORACLE])
def test_values_agree_with_gdb(targets, tmp_path, build, function, args, exprs):
    proc, records = run_recipe_jsonl(tmp_path, recipe(function, "{vars: [%s]}" % ", ".join(f'"{e}"' for e in exprs)),
                                     targets[build], *args)
    assert proc.returncode == 0, proc.stderr
    ours = [[as_gdb(r["vars"][e]) for e in exprs] for r in hits(records, "b")]
    theirs = [[from_gdb(v) for v in stop] for stop in gdb_values(targets[build], function, args, exprs, len(ours))]
    assert ours and ours == theirs


# -- DWARF is read only when a recipe names a variable, and then one CU at a time -------------

def _run_in_process(targets, text: str) -> list[dict]:
    from instrument import compile_plan, load_recipe, run
    plan = compile_plan(load_recipe(text, file="lazy.yaml"), command=[targets["dwarf_vars"], "2"])
    records: list[dict] = []
    assert run(plan, emit=records.append).exit_status == 0
    return records


def _opened(program: str) -> list[object]:
    from instrument.symbols import dwarf_info
    return [d for (path, _, _), d in dwarf_info._cache.entries().items() if path == str(Path(program).resolve())]


def test_dwarf_is_not_opened_for_a_recipe_that_names_no_variable(targets):
    from instrument.symbols import dwarf_info
    dwarf_info._cache._entries.clear()
    records = _run_in_process(targets, recipe("report", '"scale={arg1} counter at {u64[counter]}"'))
    assert [r["message"] for r in hits(records, "b")][0].startswith("scale=2 counter at ")
    assert _opened(targets["dwarf_vars"]) == []
    records = _run_in_process(targets, recipe("report", "{vars: [scale]}"))
    assert [r["vars"] for r in hits(records, "b")] == [{"scale": 2}, {"scale": 3}]
    (dwarf,) = _opened(targets["dwarf_vars"])
    assert isinstance(dwarf, dwarf_info.ModuleDwarf)
    # The scope came from the one CU that holds report; no global or type index was built.
    assert len(dwarf._functions) == 1 and dwarf._globals is None and dwarf._named_types is None


def test_a_parameter_lost_to_a_call_comes_back_from_the_callers_call_site(targets, tmp_path):
    """At -O2, after report() clobbered rsi, `scale` is DW_OP_entry_value(rsi): main's call
    site says what it passed (i + 2, from a callee-saved register), as gdb finds it."""
    from instrument.symbols.dwarf_info import dwarf_for
    from instrument.symbols.elf import open_image
    program = targets["dwarf_vars-O2"]
    line = marker_line("dwarf_vars.c", "after")
    pc = open_image(program).line_address("dwarf_vars.c", line)
    scope = dwarf_for(program).scope_at(pc)
    (scale,) = [v for v in scope.variables if v.name == "scale"]
    ops = next(o for lo, hi, o in scale.location if lo <= pc < hi)
    assert ops[0].op_name == "DW_OP_entry_value"          # what this test is about
    proc, records = run_recipe_jsonl(tmp_path, recipe(f"dwarf_vars.c:{line}", "{args: true}"), program, "4")
    assert proc.returncode == 0, proc.stderr
    got = hits(records, "b")
    assert [r["args"]["scale"] for r in got] == [int(p["scale"]) for p in printed(proc.stdout, "report")]
    assert len(got) == 4 and all("errors" not in r for r in got)
