"""`signals:` on real programs through the ptrace backend (issue 13): exact counts under a flood,
the sender's si_code, pid and value, SIGTRAP sent beside active breakpoints, threads."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_recipe_jsonl

HEADER = "version: 1\nname: t\ndescription: test recipe\n"
N = 500
REPORT = re.compile(r"handled usr1=(\d+) trap=(\d+) bad=(\d+) sum=(\d+) sender=(\d+) ticks=(\d+) "
                    r"threads=([\d,]+) child=(-?\d+)")


def flood(tmp_path, targets, body: str, mode: str, n: int, threads: int = 0):
    """Run sig_flood under `body`; return its report line's numbers, its records and the summary."""
    command = [targets["sig_flood"], mode, str(n)] + ([str(threads)] if threads else [])
    # tick()'s breakpoints are sampled (uprobes): the kernel holds back every signal but
    # a fatal one while a uprobe single-steps its instruction out of line
    # (uprobe_deny_signal), so a hit is counted once, as with the stopped path's step-overs.
    # A uprobe from the first hit (--sample-after 0), as before sampling was adaptive.
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, *command, extra=("--sample-after", "0"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    m = REPORT.search(proc.stdout)
    assert m, proc.stdout
    usr1, trap, bad, total, sender, ticks = (int(x) for x in m.groups()[:6])
    per_thread = [int(x) for x in m.group(7).split(",")]
    assert int(m.group(8)) == 0, "the sender gave up: a signal stayed pending"
    report = dict(usr1=usr1, trap=trap, bad=bad, sum=total, sender=sender, ticks=ticks, per_thread=per_thread)
    signals = [r for r in records if r["event"] == "signal"]
    return report, signals, records[-1]


@pytest.mark.parametrize("disposition, delivered", [("suppress", 0), ("pass", N)])
def test_a_flood_of_sigusr1_is_counted_exactly_and_suppress_keeps_every_one_from_the_program(
        targets, tmp_path, disposition, delivered):
    report, signals, summary = flood(tmp_path, targets, f"signals:\n  SIGUSR1: {disposition}\n", "kill", N)
    assert report["usr1"] == delivered and report["bad"] == 0
    assert len(signals) == N and [r["hits"] for r in signals] == list(range(1, N + 1))
    assert {(r["signal"], r["signo"], r["disposition"]) for r in signals} == {("SIGUSR1", 10, disposition)}
    assert summary["signals"] == {"SIGUSR1": N} and summary["exit_code"] == 0 and not summary["crashed"]


@pytest.mark.parametrize("mode, si_code", [("kill", "SI_USER"), ("tgkill", "SI_TKILL"), ("sigqueue", "SI_QUEUE")])
def test_each_sender_gives_its_si_code_pid_and_value(targets, tmp_path, mode, si_code):
    n = 40
    body = "signals:\n  usr1:\n    actions:\n      - log: '{si_code} {si_pid} {signal}'\n"
    report, signals, _ = flood(tmp_path, targets, body, mode, n)
    assert report["usr1"] == n and report["bad"] == 0      # the program saw the sender's siginfo too
    sender = report["sender"]
    assert [r["message"] for r in signals] == [f"{si_code} {sender} SIGUSR1"] * n
    assert all(r["si_pid"] == sender and r["si_uid"] == 0 for r in signals)
    if mode == "sigqueue":
        assert [r["si_value"] for r in signals] == list(range(1, n + 1))
        assert report["sum"] == n * (n + 1) // 2
    else:
        assert all("si_value" not in r for r in signals)


def test_a_condition_on_the_sender_and_a_limit(targets, tmp_path):
    body = ("signals:\n  10:\n    disposition: suppress\n    when: 'si_code == \"SI_QUEUE\" and si_value % 2 == 0'\n"
            "    limit: 5\n")
    report, signals, summary = flood(tmp_path, targets, body, "sigqueue", 30)
    assert [r["si_value"] for r in signals] == [2, 4, 6, 8, 10]
    assert report["usr1"] == 25 and report["sum"] == 30 * 31 // 2 - (2 + 4 + 6 + 8 + 10)
    assert summary["signals"] == {"SIGUSR1": 5}


SECTIONS = [("", True), ("signals:\n  SIGTRAP: pass\n", True), ("signals:\n  SIGTRAP: suppress\n", False)]


@pytest.mark.parametrize("section, delivered", SECTIONS)
def test_a_sigtrap_another_process_sends_is_a_signal_never_a_breakpoint_hit(targets, tmp_path, section, delivered):
    # tick() is hit at every turn of the loop and single-stepped over (its `add` cannot be
    # emulated); SIGTRAPs sent by kill() meanwhile reach the program's handler, every one,
    # or none does, and every hit is counted once: the breakpoint's count is the program's own.
    n = 200
    body = "breakpoints:\n  - id: tick\n    at: tick\n" + section
    report, signals, summary = flood(tmp_path, targets, body, "ktrap", n, 1)    # a worker ticks and takes them
    assert report["trap"] == (n if delivered else 0) and report["bad"] == 0
    assert summary["breakpoints"] == {"tick": report["ticks"]} and report["ticks"] >= 1
    assert not summary["crashed"] and summary["exit_code"] == 0
    if section:
        assert len(signals) == n and summary["signals"] == {"SIGTRAP": n}
        assert {(r["si_code"], r["si_pid"]) for r in signals} == {("SI_USER", report["sender"])}


@pytest.mark.parametrize("section, delivered", SECTIONS)
def test_a_sigtrap_sent_to_the_thread_at_its_breakpoint_is_still_a_signal(targets, tmp_path, section, delivered):
    # tgkill() puts the SIGTRAP in the thread's own queue, where the kernel keeps one
    # SIGTRAP at a time: one pending when the thread runs into our int3 replaces the
    # int3's (the backend reports both: the hit, then the signal), and one sent in the
    # microseconds while the kernel holds our trap for the thread merges into it and is
    # gone, as the second of two pending standard signals always is. So a few may be
    # lost, but none is taken for a hit, none kills the program, and the program gets
    # exactly those the records say were passed.
    n = 200
    body = "breakpoints:\n  - id: tick\n    at: tick\n" + section
    report, signals, summary = flood(tmp_path, targets, body, "ttrap", n, 1)
    assert summary["breakpoints"] == {"tick": report["ticks"]} and report["bad"] == 0
    assert not summary["crashed"] and summary["exit_code"] == 0
    if section:
        assert report["trap"] == (len(signals) if delivered else 0)
        assert {(r["si_code"], r["si_pid"]) for r in signals} == {("SI_TKILL", report["sender"])}
        seen = len(signals)
    else:
        seen = report["trap"]
    assert n - n // 10 <= seen <= n


@pytest.mark.parametrize("disposition", ["pass", "suppress"])
def test_signals_arriving_during_step_overs_count_each_hit_once(targets, tmp_path, disposition):
    n = 200
    body = f"breakpoints:\n  - id: tick\n    at: tick\nsignals:\n  SIGUSR1: {disposition}\n"
    report, signals, summary = flood(tmp_path, targets, body, "tgkill", n, 1)    # to the worker that ticks
    assert len(signals) == n and report["usr1"] == (n if disposition == "pass" else 0)
    assert summary["breakpoints"] == {"tick": report["ticks"]} and report["ticks"] >= 1


@pytest.mark.parametrize("mode", ["tgkill", "kill"])
def test_threads_get_their_own_signals_beside_breakpoints(targets, tmp_path, mode):
    n, threads = 90, 3
    body = "breakpoints:\n  - id: tick\n    at: tick\nsignals:\n  SIGUSR1: pass\n"
    report, signals, summary = flood(tmp_path, targets, body, mode, n, threads)
    assert report["usr1"] == n and report["bad"] == 0 and len(signals) == n
    assert summary["breakpoints"] == {"tick": report["ticks"]}
    workers = {r["tid"] for r in signals}
    if mode == "tgkill":
        # Sent to each worker in turn: each took its own third, and the records say which.
        assert report["per_thread"] == [n // threads] * threads
        assert len(workers) == threads and all(r["tid"] != r["pid"] for r in signals)
    else:
        assert sum(report["per_thread"]) == n and all(r["tid"] != r["pid"] for r in signals)


def test_text_records_name_the_signal_and_its_sender(targets, tmp_path):
    from tests.conftest import run_cli

    recipe = tmp_path / "r.yaml"
    recipe.write_text(HEADER + "signals:\n  SIGUSR1: suppress\n")
    proc = run_cli("run", str(recipe), "--", targets["sig_flood"], "sigqueue", "3")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "] signal " in line]
    assert len(lines) == 3 and "SIGUSR1 #1 (SI_QUEUE from pid" in lines[0] and "value 1) suppress" in lines[0]


WATCH = "breakpoints:\n  - id: w\n    at: ticks\n    type: memory\n    access: write\n    size: 8\n"


@pytest.mark.parametrize("mode, threads", [("kill", 0), ("kill", 1), ("tgkill", 1)])
def test_signals_beside_a_memory_breakpoint_are_held_through_injected_calls_and_count_once(
        targets, tmp_path, mode, threads):
    # Each write to the watched page makes the debugger inject mprotect calls into the
    # thread; the handler's own counters are on that page too. Signals that come
    # meanwhile wait in the kernel's queue and are delivered afterwards, every one; an
    # access whose step a signal put off is still one hit.
    n = 150
    report, signals, summary = flood(tmp_path, targets, WATCH + "signals:\n  SIGUSR1: pass\n", mode, n, threads)
    assert report["usr1"] == n and report["bad"] == 0 and len(signals) == n
    assert summary["breakpoints"] == {"w": report["ticks"]} and not summary["crashed"]


def test_a_sigtrap_handler_on_a_watched_page_keeps_its_handler(targets, tmp_path):
    # The program's SIGTRAP handler writes to the watched page, so the debugger steps
    # accesses inside it: were SIGTRAP blocked there, the kernel would reset the handler
    # of the blocked signal each step forces, and the next SIGTRAP would kill the program.
    # (The handler runs with SIGTRAP unblocked, so a SIGTRAP sent while a step of ours
    # waits can nest in it, which the program's unlocked `trap++` may then miscount.)
    n = 60
    report, signals, summary = flood(tmp_path, targets, WATCH + "signals:\n  SIGTRAP: pass\n", "ktrap", n, 1)
    assert not summary["crashed"] and summary["exit_code"] == 0
    assert 1 <= report["trap"] <= len(signals) <= n and report["bad"] == 0
    assert {(r["si_code"], r["si_pid"]) for r in signals} == {("SI_USER", report["sender"])}
    assert summary["breakpoints"] == {"w": report["ticks"]}


@pytest.mark.parametrize("section", ["", "signals:\n  SIGTRAP: pass\n"])
def test_a_breakpoint_in_the_programs_sigtrap_handler_leaves_the_handler_in_place(targets, tmp_path, section):
    # SIGTRAP is blocked while its handler runs, and the kernel resets the handler of a
    # blocked signal when it forces one (our int3 in f): the backend lets the handler run
    # with SIGTRAP unblocked, so every SIGTRAP, sent (raise) or the program's own int3,
    # reaches it and every call of f is a hit.
    n = 3
    body = "breakpoints:\n  - id: f\n    at: f\n" + section
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, targets["sig_trap_handler"], str(n))
    assert proc.returncode == 0, proc.stderr
    assert f"handled={2 * n} f={2 * n}" in proc.stdout
    summary = records[-1]
    assert summary["breakpoints"] == {"f": 2 * n} and not summary["crashed"]
    if section:
        signals = [r for r in records if r["event"] == "signal"]
        assert [r["si_code"] for r in signals] == ["SI_TKILL"] * n + ["SI_KERNEL"] * n
