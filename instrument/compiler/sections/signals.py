"""The `signals:` section: handlers by POSIX signal, each with a disposition (pass or suppress)."""

from __future__ import annotations

from ...actions import CompileContext
from ...backend.siginfo import signal_name, signal_number
from ...errors import RecipeError
from ...recipe.model import Recipe
from ..table import SignalHandlerPlan, TableBuilder, compile_actions

# Never reported to a tracer as deliveries it could decide on: SIGKILL is not seen at
# all, SIGSTOP is a job-control stop (the Linux backend resumes it as one).
UNHANDLED = {9: "SIGKILL cannot be caught, blocked or seen by a debugger",
             19: "SIGSTOP stops the process (job control); it cannot be handled"}


def compile_signals(recipe: Recipe, ctx: CompileContext, table: TableBuilder, errors: list[RecipeError]) -> None:
    seen: dict[int, str | int] = {}
    for handler in recipe.signals:
        path = handler.path
        key_at = recipe.where(path, key=True)
        signo = signal_number(handler.key)
        if signo is None:
            errors.append(RecipeError(
                f"unknown signal '{handler.key}': write a name (SIGUSR1 or usr1), a number 1-31 or 34-64, "
                "or SIGRTMIN+N / SIGRTMAX-N", key_at))
            continue
        if signo in UNHANDLED:
            errors.append(RecipeError(f"signal '{handler.key}': {UNHANDLED[signo]}", key_at))
            continue
        if signo in seen:
            errors.append(RecipeError(f"signal '{handler.key}' is {signal_name(signo)}, handled already as "
                                      f"'{seen[signo]}'", key_at))
            continue
        seen[signo] = handler.key
        when = None
        if handler.when is not None:
            try:
                when = ctx.expr(handler.when, path + ("when",))
            except RecipeError as e:
                errors.append(e)
        actions = compile_actions(handler.actions, ctx, errors)
        table.by_signal[signo] = SignalHandlerPlan(signal_name(signo), signo, handler.disposition, when,
                                                   handler.limit, actions, key_at.line)
