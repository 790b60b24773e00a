"""`instrument trace` on real programs (issue 17): a recipe written from flags, run like `run` runs one,
and saved so that running the file gives the same records."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def trace(tmp_path: Path, *args: str, out: str = "t.jsonl") -> tuple[object, list[dict]]:
    path = tmp_path / out
    proc = run_cli("trace", *args[:args.index("--")], "--format", "jsonl", "-o", str(path), *args[args.index("--"):])
    recs = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return proc, recs


def of(recs: list[dict], event: str) -> list[dict]:
    return [r for r in recs if r["event"] == event]


def arg0(rec: dict) -> int:
    return int(rec["message"].split()[0].split("=")[1], 16)


def test_trace_a_function_gives_one_record_per_call_with_its_argument(targets, tmp_path):
    proc, recs = trace(tmp_path, "-i", "hit", "--", targets["counter"], "100")
    assert proc.returncode == 0, proc.stderr
    assert "sum=9900" in proc.stdout
    hits = of(recs, "breakpoint")
    assert len(hits) == 100
    assert [arg0(r) for r in hits] == list(range(100))
    assert {(r["id"], r["symbol"]) for r in hits} == {("hit", "hit")}
    assert recs[-1]["breakpoints"] == {"hit": 100} and recs[-1]["recipe"]["name"] == "trace"


def test_ret_pairs_every_call_with_its_return(targets, tmp_path):
    proc, recs = trace(tmp_path, "-i", "hit", "--ret", "--args", "1", "--", targets["counter"], "50")
    assert proc.returncode == 0, proc.stderr
    calls = {(r["tid"], r["hits"]): arg0(r) for r in of(recs, "breakpoint")}
    returns = {(r["tid"], r["hits"]): int(r["retval"], 16) for r in of(recs, "return")}
    assert len(calls) == 50 and calls.keys() == returns.keys()
    assert all(returns[k] == 2 * calls[k] for k in calls)
    # Each return follows its own call.
    order = [(r["event"], r["hits"]) for r in recs if r["event"] in ("breakpoint", "return")]
    assert order == [(e, n) for n in range(1, 51) for e in ("breakpoint", "return")]


def test_saved_recipe_validates_and_gives_the_same_records(targets, tmp_path):
    saved = tmp_path / "counted.yaml"
    proc, first = trace(tmp_path, "-i", "hit", "-i", "hi?: x={arg0}", "--args", "1", "--ret", "--limit", "20",
                        "--save", str(saved), "--", targets["counter"], "30")
    assert proc.returncode == 0, proc.stderr
    text = saved.read_text()
    assert "at: hit" in text and "limit: 20" in text and "on_return: []" in text
    assert run_cli("validate", str(saved)).returncode == 0
    out = tmp_path / "again.jsonl"
    again_proc = run_cli("run", str(saved), "--format", "jsonl", "-o", str(out))
    assert again_proc.returncode == 0, again_proc.stderr
    again = [json.loads(line) for line in out.read_text().splitlines()]

    def comparable(recs: list[dict]) -> list[dict]:
        # Times, pids and (ASLR) addresses differ from run to run; everything else may not.
        return [{k: v for k, v in r.items() if k not in ("time", "pid", "tid", "address")}
                for r in recs if r["event"] in ("breakpoint", "return")]

    assert len(comparable(first)) == 80        # 20 calls of each breakpoint, and their returns
    assert comparable(again) == comparable(first)
    # The trace ran the saved file itself: same recipe name and hash as `run` of it.
    assert first[-1]["recipe"] == again[-1]["recipe"] == {"name": "counted", "sha256": first[-1]["recipe"]["sha256"]}
    # The pattern's expansion of hit is a second breakpoint there, under an id of its own.
    assert first[-1]["breakpoints"] == {"hit": 20, "hit#2": 20}
    assert {r["message"] for r in of(first, "breakpoint") if r["id"] == "hit#2"} == {f"x={i}" for i in range(20)}


def test_flag_mistakes_are_reported_as_flags(targets, tmp_path):
    proc = run_cli("trace", "-i", "nosuch*", "-i", "hit: {arg0 +}", "-i", "hit+", "--", targets["counter"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"instrument trace: error: -i 'nosuch*': pattern 'nosuch*' matches no function in {targets['counter']}",
        "instrument trace: error: -i 'hit: {arg0 +}': log: unexpected end of expression",
        "instrument trace: error: -i hit+: at: unexpected end of expression",
    ]


def test_print_recipe_writes_the_recipe_and_runs_nothing(targets, tmp_path):
    proc = run_cli("trace", "-i", "libc.so.6!open*", "-i", "libc.so.6!malloc: size={arg0}", "--backtrace", "--limit", "2",
                   "--print-recipe", "--", targets["counter"], "3")
    assert proc.returncode == 0, proc.stderr
    assert "sum=" not in proc.stdout
    recipe = tmp_path / "printed.yaml"
    recipe.write_text(proc.stdout)
    assert run_cli("validate", str(recipe)).returncode == 0
    assert "- at: libc.so.6!open*\n  limit: 2\n" in proc.stdout
    assert "log: size={arg0}" in proc.stdout and "depth: 16" in proc.stdout


def test_a_libc_pattern_traced_in_one_line(targets, tmp_path):
    proc, recs = trace(tmp_path, "-i", "libc.so.6!puts", "-i", "libc.so.6!printf*", "--args", "0", "--",
                       targets["counter"], "3")
    assert proc.returncode == 0, proc.stderr
    assert {r["id"] for r in of(recs, "breakpoint")} <= {"libc.so.6!puts", "libc.so.6!printf"}
    assert of(recs, "breakpoint") and all("message" not in r for r in of(recs, "breakpoint"))


def test_trace_needs_a_target(tmp_path):
    proc = run_cli("trace", "-i", "malloc")
    assert proc.returncode == 2 and "give a command after `--`" in proc.stderr
