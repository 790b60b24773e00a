"""The command line: thin click commands over the library (the only module that imports click)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from .version import __version__
from .errors import EXIT_USAGE, InstrumentError, RecipeErrors, TargetError, UsageError
from .report import RECORD_FORMATS, REPORT_FORMATS

EPILOG_RUN = """\b
Examples:
  instrument run recipes/trace-calls.yaml -- /bin/ls /
  instrument run trace-calls --set function=malloc -- ./app
  instrument run watch.yaml --pid 1234 --format jsonl -o hits.jsonl
\b
Exit status: 0 the target exited or was detached; 1 the target crashed;
2 usage or recipe error; 3 the target could not be started or attached;
128+N a signal N ended the session (141: the reader of stdout went away)."""


def _fail(error: InstrumentError, traceback: bool) -> None:
    if traceback:
        import traceback as tb
        tb.print_exception(error)
    if isinstance(error, RecipeErrors):
        for e in error.errors:
            click.echo(str(e), err=True)
    else:
        message = str(error)
        click.echo(message if message.startswith(("error:", "instrument:")) or ": error: " in message
                   else f"instrument: error: {message}", err=True)
    sys.exit(error.exit_status)


NO_SECCOMP_HELP = ("Stop the target at every system call (PTRACE_SYSCALL) and sort out the ones the recipe's "
                   "`syscalls:` names, instead of a seccomp-bpf filter that stops only those (for comparison; "
                   "the summary's `syscalls` says which ran).")
NO_PIN_HELP = ("Do not pin tracer and target to one CPU. By default a started target runs on the "
               "tracer's CPU while it has one thread (stops cost ~5x less here) and gets every CPU back "
               "at its second thread, so threads interleave as untraced; the summary says `pinned` "
               "when the whole run was. --no-pin makes single-threaded stops slower, nothing else.")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Catch InstrumentError once: one line per error, the documented exit status."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        traceback = bool(ctx.find_root().params.get("traceback"))
        try:
            return fn(*args, **kwargs)
        except InstrumentError as e:
            _fail(e, traceback)
        except BrokenPipeError:
            # The reader of our stdout went away (`| head`): end as a program killed by
            # SIGPIPE would, quietly, with the target killed or detached (the session's
            # clean-up ran on the way out), not with 1, which says "the target crashed".
            import os
            import signal
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
    return wrapper


def _dash_is_stdout(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value == "-" else value


def find_recipe(name_or_path: str) -> str:
    """A recipe file as given, or a shipped recipe by name (`heap-trace`)."""
    if Path(name_or_path).exists() or "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return name_or_path
    from .recipe.library import shipped_recipe_path
    path = shipped_recipe_path(name_or_path)
    if path is None:
        raise UsageError(f"no recipe file '{name_or_path}' and no shipped recipe of that name "
                         "(see `instrument recipes`)")
    return str(path)


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for item in values:
        if "=" not in item:
            raise UsageError(f"--set {item}: expected NAME=VALUE")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    return overrides


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="instrument")
@click.option("--traceback", is_flag=True, help="Show Python tracebacks for errors (for bug reports).")
def main(traceback: bool) -> None:
    """instrument: a declarative debugger.

    Write a YAML recipe that says what to run, where to break and what to
    do on each hit; `instrument run` executes it and prints one record per
    event. Start with `instrument recipes` to see the shipped ones, or trace
    without a recipe: `instrument trace -i 'libc.so.6!open*' -- ./app`.
    """


@main.command(epilog=EPILOG_RUN)
@click.argument("recipe")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--pid", type=int, help="Attach to this running process instead of starting one.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a recipe param (repeatable).")
@click.option("--format", "fmt", type=click.Choice(list(RECORD_FORMATS)), default="text", show_default=True,
              help="Record format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True), callback=_dash_is_stdout,
              help="Write records here instead of stdout ('-': stdout).")
@click.option("--out-dir", default="instrument-out", show_default=True,
              help="Folder for files the recipe's actions write (dump: file:).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="End the session after this many seconds (overrides the recipe).")
@click.option("--all-events", is_flag=True, help="Write a record for every debug event, not just handled ones.")
@click.option("--no-pin", is_flag=True, help=NO_PIN_HELP)
@click.option("--no-sampling", is_flag=True,
              help="Stop the target at every breakpoint hit, even one that only logs registers "
                   "(by default such hits are sampled by perf events while the target runs on: "
                   "hardware breakpoints as perf breakpoints, soft ones as uprobes after 1,024 stops).")
@click.option("--no-seccomp", is_flag=True, help=NO_SECCOMP_HELP)
# Internal (tests, bench): the stops before a sampled soft breakpoint becomes a uprobe
# (compiler/sampling.py SAMPLE_AFTER); 0: a uprobe from the first hit.
@click.option("--sample-after", type=click.IntRange(min=0), default=None, hidden=True)
@handle_errors
def run(recipe: str, command: tuple[str, ...], pid: int | None, sets: tuple[str, ...], fmt: str,
        output: str | None, out_dir: str, timeout: float | None, all_events: bool, no_pin: bool,
        no_sampling: bool, no_seccomp: bool, sample_after: int | None) -> None:
    """Run RECIPE (a file, or the name of a shipped recipe) against its target.

    A COMMAND after `--` replaces the recipe's `target: run:`.
    """
    from .backend import get_backend
    from .compiler.collect import compile_recipe

    backend = get_backend()
    plan = compile_recipe(find_recipe(recipe), overrides=parse_sets(sets), command=command or None, pid=pid,
                          timeout=timeout, capabilities=backend.capabilities, need_target=True,
                          sample_hits=not no_sampling, sample_after=sample_after)
    _run_plan(plan, backend, fmt=fmt, output=output, out_dir=out_dir, all_events=all_events, no_pin=no_pin,
              no_seccomp=no_seccomp)


def _run_plan(plan: Any, backend: Any, *, fmt: str, output: str | None, out_dir: str, all_events: bool = False,
              no_pin: bool = False, no_seccomp: bool = False) -> None:
    """Run a compiled plan, report its records, say what went wrong on stderr, exit with its status."""
    from .engine.session import run as run_session
    from .report import open_reporter

    with open_reporter(fmt, output) as reporter:
        result = run_session(plan, emit=reporter.emit, backend=backend, all_events=all_events,
                             out_dir=out_dir, pin_cpu=not no_pin, syscall_filter=not no_seccomp)
    # Records may be going to a file: say on stderr what went wrong with the recipe itself.
    for message in result.summary.get("errors", []):
        click.echo(f"instrument: warning: {message}", err=True)
    if result.summary.get("not_armed"):
        click.echo("instrument: warning: never armed: " + ", ".join(result.summary["not_armed"]), err=True)
    sys.exit(result.exit_status)


EPILOG_TRACE = """\b
Examples:
  instrument trace -i 'libc.so.6!open*' -i malloc -- ./app
  instrument trace -i hit --ret -- ./counter 100       # each call, then its return value
  instrument trace -i 'libz.so*!inflate*' --pid 1234   # a pattern over a library: armed as it loads
  instrument trace -i 'libc.so.6!open: {str(arg0)} flags={arg1:#x}' --ret -- /bin/ls /
  instrument trace -i 'ns::Parser::*' --backtrace 8 --limit 5 -- ./app
  instrument trace -i 'libc.so.6!str*' --save strings.yaml -- ./app   # then: instrument run strings.yaml
  instrument trace -s openat -s 'write: {count} bytes to fd {fd}' -- /bin/ls /
\b
PLACE is what a recipe's `at:` takes: a function (malloc, ns::K::f), a module's
function (libc.so.6!malloc), an address expression (hit+4, 0x401136,
loop.c:12), or a symbol pattern: * and ? (and [abc]) over function names,
`MODULE!PATTERN` for a library's (the module may be a pattern too: *!malloc),
a bare pattern for the program's own. A pattern arms one breakpoint per
function it matches (at most --max-matches), as each module loads; each
hit's record names its function. Without ': FORMAT', a hit logs its first
--args arguments in hex. Exit status as for `run`."""


@main.command(epilog=EPILOG_TRACE)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-i", "--include", "specs", multiple=True, metavar="PLACE[: FORMAT]",
              help="Break here (repeatable); ': FORMAT' says what each hit logs, e.g. 'open: {str(arg0)}'.")
@click.option("-s", "--syscall", "syscalls", multiple=True, metavar="NAME[: FORMAT]",
              help="Record each call of this system call, entry and exit, as strace shows it (repeatable; "
                   "a name, number or glob such as 'open*').")
@click.option("--args", "n_args", type=click.IntRange(0, 6), default=3, show_default=True,
              help="Arguments each hit logs (arg0..), where no FORMAT is given.")
@click.option("--ret", is_flag=True, help="Also a `return` record per call, with its return value (retval).")
@click.option("--backtrace", type=click.IntRange(1, 256), is_flag=False, flag_value=16, default=None,
              metavar="[DEPTH]", help="Record the call stack at each hit (DEPTH frames, default 16).")
@click.option("--limit", type=click.IntRange(min=1), help="Stop breaking on a function after N hits of it.")
@click.option("--hardware", is_flag=True, help="Use debug registers instead of int3 (at most 4 functions).")
@click.option("--follow-forks", is_flag=True, help="Trace the children the program forks too.")
@click.option("--max-matches", type=click.IntRange(min=1),
              help="The most functions one pattern may arm (default 1000).")
@click.option("--pid", type=int, help="Attach to this running process instead of starting COMMAND.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
              help="Record format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              callback=_dash_is_stdout, help="Write records here instead of stdout ('-': stdout).")
@click.option("--out-dir", default="instrument-out", show_default=True, help="Folder for files actions write.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="End the session after this many seconds.")
@click.option("--save", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the equivalent recipe to FILE (then `instrument run FILE` does the same).")
@click.option("--print-recipe", is_flag=True, help="Print the equivalent recipe and exit without running.")
@click.option("--no-pin", is_flag=True, help=NO_PIN_HELP)
@handle_errors
def trace(command: tuple[str, ...], specs: tuple[str, ...], syscalls: tuple[str, ...], n_args: int, ret: bool,
          backtrace: int | None,
          limit: int | None, hardware: bool, follow_forks: bool, max_matches: int | None, pid: int | None,
          fmt: str, output: str | None, out_dir: str, timeout: float | None, save: str | None,
          print_recipe: bool, no_pin: bool) -> None:
    """Trace calls without writing a recipe: break at each PLACE, log each hit.

    COMMAND (after `--`) is started, or --pid attached. The recipe these flags
    stand for runs exactly as `instrument run` would run it.
    """
    from .backend import get_backend
    from .compiler.collect import compile_recipe
    from .recipe.trace import TRACE_FILE, TraceOptions, trace_recipe

    written = trace_recipe(TraceOptions(
        specs=specs, syscalls=syscalls, command=command, pid=pid, args=n_args, ret=ret, backtrace=backtrace,
        limit=limit,
        hardware=hardware, follow_forks=follow_forks, max_matches=max_matches, timeout=timeout))
    if print_recipe:
        click.echo(written.text, nl=False)
        return
    if not command and pid is None:
        raise UsageError("trace what? give a command after `--` (instrument trace -i malloc -- ./app) or --pid")
    if save:
        written.save(save)
    file = save or TRACE_FILE
    backend = get_backend()
    try:
        plan = compile_recipe(save or written.text, file=file, capabilities=backend.capabilities,
                              need_target=True)
    except RecipeErrors as e:
        raise written.flag_errors(e, file) from None
    _run_plan(plan, backend, fmt=fmt, output=output, out_dir=out_dir, no_pin=no_pin)


@main.command()
@click.argument("recipes", nargs=-1, required=True)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Check with these param values.")
@click.option("--target", "target", type=click.Path(exists=True, dir_okay=False), metavar="BINARY",
              help="Also resolve every breakpoint against this program, without running it.")
@handle_errors
def validate(recipes: tuple[str, ...], sets: tuple[str, ...], target: str | None) -> None:
    """Check recipes: YAML, schema, params, expressions, symbols.

    Prints `file:line:col: error: ...` for each problem and exits 2 if any.
    With --target, lists where each breakpoint lands in BINARY: its link-time
    address, or the library it is deferred to.

    \b
    Example:
      instrument validate recipes/*.yaml
      instrument validate heap-trace --target ./app
    """
    from .compiler.collect import compile_recipe

    failed = False
    overrides = parse_sets(sets)
    command = (str(Path(target).absolute()),) if target else None
    for name in recipes:
        try:
            plan = compile_recipe(find_recipe(name), overrides=overrides, command=command)
            if command:
                from .compiler.resolve import resolve_plan_statically
                from .report.resolution import format_resolution
                click.echo(format_resolution(name, resolve_plan_statically(plan)), nl=False)
                continue
        except RecipeErrors as e:
            failed = True
            for err in e.errors:
                click.echo(str(err), err=True)
        except InstrumentError as e:
            failed = True
            click.echo(str(e) if ": error: " in str(e) else f"{name}: error: {e}", err=True)
        else:
            click.echo(f"{name}: ok")
    sys.exit(EXIT_USAGE if failed else 0)


@main.command()
@click.argument("recipe")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a recipe param.")
@handle_errors
def explain(recipe: str, command: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """Print the compiled handler table and breakpoint plan of RECIPE.

    \b
    Example:
      instrument explain recipes/event-log.yaml -- /bin/true
    """
    from .compiler.collect import compile_recipe
    from .report.explain import explain as explain_plan

    plan = compile_recipe(find_recipe(recipe), overrides=parse_sets(sets), command=command or None)
    try:
        from .backend import get_backend
        capabilities = get_backend().capabilities
        sampled, abi, soft = capabilities.sampled_registers, capabilities.abi, capabilities.sampled_soft
    except TargetError:             # no backend on this OS: the plan alone
        from .arch.x86_64 import Abi
        sampled, abi, soft = frozenset(), Abi.SYSV, False
    click.echo(explain_plan(plan, sampled, abi, soft), nl=False)


@main.command()
@click.argument("which", type=click.Choice(["recipe", "report"]), default="recipe")
@click.option("--markdown", is_flag=True,
              help="Print the recipe reference generated from the schema (docs/recipe-reference.md).")
@handle_errors
def schema(which: str, markdown: bool) -> None:
    """Print a JSON Schema: `recipe` (point your editor's YAML language server at it)
    or `report` (what `instrument triage --format json` writes).

    \b
    Examples:
      instrument schema recipe > recipe.schema.json
      # then, first line of a recipe:  # yaml-language-server: $schema=recipe.schema.json
      instrument schema recipe --markdown > docs/recipe-reference.md
    """
    import json

    if markdown and which != "recipe":
        raise UsageError("--markdown documents the recipe schema only: instrument schema recipe --markdown")
    if which == "report":
        from .report.json import report_schema
        click.echo(json.dumps(report_schema(), indent=2))
        return
    from .recipe.schema import schema_json
    if markdown:
        from .recipe.reference import markdown_reference
        click.echo(markdown_reference(schema_json()), nl=False)
        return
    click.echo(json.dumps(schema_json(), indent=2))


@main.command("recipes")
@handle_errors
def list_recipes() -> None:
    """List the recipes shipped with instrument, with their params.

    \b
    Example:
      instrument recipes
      instrument run heap-trace -- ./app        # run one by name
    """
    from .recipe.library import shipped_recipes
    from .report.library import format_library

    click.echo(format_library(shipped_recipes()), nl=False)


EPILOG_TRIAGE = """\b
Examples:
  instrument triage --inputs crashes/ -o report.json -- ./parser @@
  instrument triage --inputs corpus/ --shard 1/4 -o shard1.json -- ./parser
  instrument triage --inputs crashes/ --format sarif --fail-on PROBABLY_EXPLOITABLE -- ./app --file @@
  instrument triage --inputs crashes/ -o report.json --sarif report.sarif --markdown summary.md -- ./parser @@
  instrument triage --core core.1234 --core /var/crash/cores/ --exe ./parser
\b
'@@' in the command is replaced by each input's path; without it the input
goes on stdin. With --core nothing runs: each core file (further ones may
follow as arguments) gives the crash record the live run would have, from
its registers, memory and mapped files (they must still be there, or the
program given with --exe).
\b
Reports: --format to -o (default: JSON on stdout), and any of --json,
--sarif, --markdown FILE, all from the same runs. With only those three,
nothing goes to stdout unless --format is given.
\b
Exit status: 0 no crash at or above --fail-on; 1 crashes found;
2 usage or recipe error (a recipe with breakpoints or set/write/return
for core files); 3 the target could not be started, or a core file is not
a readable x86-64 ELF core (one line names it)."""
TRIAGE_CLASSES = ("EXPLOITABLE", "PROBABLY_EXPLOITABLE", "PROBABLY_NOT_EXPLOITABLE", "NOT_EXPLOITABLE", "UNKNOWN")
_OUTPUT_PATH = click.Path(dir_okay=False, writable=True, allow_dash=True)


def report_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--format/-o and the per-format --json/--sarif/--markdown files, shared by triage and merge."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed([
            click.option("--format", "fmt", type=click.Choice(list(REPORT_FORMATS)), default="json",
                         show_default=True, help=f"Format of the {what} written to -o (or stdout)."),
            click.option("-o", "--output", type=_OUTPUT_PATH, callback=_dash_is_stdout,
                         help=f"Write the {what} here instead of stdout ('-': stdout)."),
            click.option("--json", "json_out", type=_OUTPUT_PATH, metavar="FILE",
                         help="Also write the JSON report to FILE ('-': stdout)."),
            click.option("--sarif", type=_OUTPUT_PATH, metavar="FILE",
                         help="Also write the SARIF 2.1.0 log to FILE ('-': stdout)."),
            click.option("--markdown", type=_OUTPUT_PATH, metavar="FILE",
                         help="Also write the Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY; '-': stdout)."),
        ]):
            fn = option(fn)
        return fn
    return decorate


def report_outputs(fmt: str, output: str | None, json_out: str | None, sarif: str | None,
                   markdown: str | None) -> list[tuple[str, str | None]]:
    """(format, path or None for stdout) of every report to write, checked before any work.

    The --format report goes to -o or stdout; when only per-format files are given
    (no -o, no --format) stdout stays quiet."""
    from click.core import ParameterSource

    from .report.triage import check_outputs

    ctx = click.get_current_context()
    extra: list[tuple[str, str | None]] = [
        (name, None if path == "-" else path)
        for name, path in (("json", json_out), ("sarif", sarif), ("markdown", markdown)) if path is not None]
    asked = any(ctx.get_parameter_source(p) != ParameterSource.DEFAULT for p in ("fmt", "output"))
    outputs = [(fmt, output)] if asked or not extra else []
    outputs += extra
    check_outputs(outputs)
    return outputs


@main.command(epilog=EPILOG_TRIAGE)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--recipe", help="A recipe to extend the crash records (default: the shipped crash-triage).")
@click.option("--inputs", type=click.Path(exists=True, file_okay=False), help="Run once per file in this folder (recursively).")
@click.option("--core", "cores", multiple=True, type=click.Path(exists=True), metavar="CORE",
              help="Triage this ELF core file, or every file in this folder, instead of running anything "
                   "(repeatable; with --core, the arguments are more cores).")
@click.option("--exe", type=click.Path(exists=True, dir_okay=False),
              help="The program the cores are of, where the path the core names is gone or moved.")
@click.option("--jobs", type=click.IntRange(min=0), default=0, help="Parallel workers (default: the number of CPUs).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per run before a hang is killed and recorded as a timeout (default 10).")
@click.option("--shard", metavar="K/N", help="Only the K-th of N deterministic slices of the sorted inputs.")
@report_options("report")
@click.option("--fail-on", type=click.Choice(TRIAGE_CLASSES), default="UNKNOWN", show_default=True,
              help="Exit 1 when a crash of this class or a more severe one is found.")
@click.option("--rules", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A rules file that adds or overrides classification rules (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a recipe param (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--no-pin", is_flag=True, help="Do not pin each worker and its targets to one CPU.")
@handle_errors
def triage(command: tuple[str, ...], recipe: str | None, inputs: str | None, cores: tuple[str, ...],
           exe: str | None, jobs: int, timeout: float | None, shard: str | None, fmt: str, output: str | None,
           json_out: str | None, sarif: str | None, markdown: str | None, fail_on: str,
           rules: tuple[str, ...], sets: tuple[str, ...], quiet: bool, no_pin: bool) -> None:
    """Run COMMAND over inputs, or read core files; catch, classify and deduplicate crashes; write reports."""
    import os

    from .report.triage import ProgressBar, write_reports
    from .triage.report_model import exit_status
    from .triage.runner import TriageConfig, parse_shard
    from .triage.runner import triage as run_triage

    outputs = report_outputs(fmt, output, json_out, sarif, markdown)   # before the inputs run, not after
    if exe is not None and not cores:
        raise UsageError("--exe names the program of core files: give them with --core")
    if cores:
        cores, command = cores + command, ()
    config = TriageConfig(command=command, recipe=find_recipe(recipe) if recipe else None, inputs=inputs,
                          jobs=jobs or len(os.sched_getaffinity(0)), timeout=timeout,
                          shard=parse_shard(shard) if shard else None, rules=rules, pin_cpu=not no_pin,
                          overrides=parse_sets(sets), cores=cores,
                          exe=os.path.abspath(exe) if exe else None)
    report = run_triage(config, progress=ProgressBar(quiet=quiet))
    if inputs is not None and not report["counts"]["inputs"]:
        click.echo(f"instrument: warning: no inputs in {inputs} (README.txt and dot files are skipped)", err=True)
    write_reports(report, outputs)
    sys.exit(exit_status(report, fail_on))


@main.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@report_options("merged report")
@click.option("--fail-on", type=click.Choice(TRIAGE_CLASSES), default="UNKNOWN", show_default=True,
              help="Exit 1 when the merged report has a crash of this class or a more severe one.")
@handle_errors
def merge(reports: tuple[str, ...], fmt: str, output: str | None, json_out: str | None, sarif: str | None,
          markdown: str | None, fail_on: str) -> None:
    """Combine triage shard reports (JSON) into the report one job would have written.

    \b
    Example:
      instrument merge shard-*.json -o report.json
      instrument merge shard-*.json -o report.json --sarif report.sarif --markdown summary.md
    """
    from .report.json import load_report
    from .report.triage import write_reports
    from .triage.report_model import exit_status, merge_reports

    outputs = report_outputs(fmt, output, json_out, sarif, markdown)
    merged = merge_reports([load_report(path) for path in reports])
    write_reports(merged, outputs)
    sys.exit(exit_status(merged, fail_on))


if __name__ == "__main__":
    main()
