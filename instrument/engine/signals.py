"""`signals:` at run time: one record per handled delivery, its actions, and whether the program gets it.

A delivery is a signal the program is about to receive: sent by a process
(kill, tgkill, sigqueue) or raised by the CPU in the program's own code. The
debugger's own traps (its int3s, single steps, debug-register hits, guard
pages) never come here: hits.ExceptionDispatch takes those first.
"""

from __future__ import annotations

from typing import Any, MutableMapping

from ..backend.siginfo import si_code_name
from ..compiler.table import SignalHandlerPlan
from ..events import DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from .process import ProcessState
from .records import Recorder, record_fields
from .stop import Stop, StopEnv, StopHost, condition_holds

_EXCEPTION = int(EventCode.EXCEPTION_DEBUG_EVENT)
_CPU_TRAPS = (ExceptionCode.BREAKPOINT, ExceptionCode.SINGLE_STEP)


def signal_fields(info: ExceptionInfo) -> dict[str, Any]:
    """What a signal record carries and its expressions see: values (ints stay ints)."""
    signo = info.signo or 0
    fields: dict[str, Any] = {"signo": signo, "signal": info.signal,
                              "si_code": si_code_name(signo, info.si_code or 0), "address": info.address}
    for key in ("si_pid", "si_uid", "si_value"):
        value = getattr(info, key)
        if value is not None:
            fields[key] = value
    return fields


class SignalDispatch:
    """The `signals:` handlers of one session, with how many deliveries each has handled."""

    def __init__(self, by_signal: dict[int, SignalHandlerPlan], host: StopHost, recorder: Recorder) -> None:
        self.by_signal, self.host, self.recorder = by_signal, host, recorder
        self.counts: dict[str, int] = {h.key: 0 for h in by_signal.values()}

    def on_signal(self, process: ProcessState, event: DebugEvent, info: ExceptionInfo,
                  regs: MutableMapping[str, int] | None) -> bool | None:
        """Handle one delivery: True to pass the signal on, False to drop it, None when no
        handler takes it (none for this signal, its condition false, its limit reached):
        the caller then does as without one."""
        handler = self.by_signal.get(info.signo) if info.signo is not None else None
        if handler is None:
            return None
        if not info.first_chance and info.code in _CPU_TRAPS and not info.from_user:
            return None      # the last-chance report of a trap passed on at its first: handled then
        hits = self.counts[handler.key]
        if handler.limit is not None and hits >= handler.limit:
            return None
        fields = signal_fields(info)
        fields["disposition"] = handler.disposition
        env = StopEnv(self.host, process, event.tid, regs, fields, hits)
        if not condition_holds(handler.when, env, self.recorder.warn_once, f"signal {handler.key}: condition failed"):
            return None
        hits += 1
        self.counts[handler.key] = env.hits = hits
        rec = self.recorder.record("signal", _EXCEPTION, event.pid, event.tid, **record_fields(fields), hits=hits)
        Stop(env, rec).run(handler.actions)
        self.recorder.emit(rec)
        return not handler.suppress
