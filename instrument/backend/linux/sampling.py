"""Sampled breakpoint hits for LinuxBackend (hardware: perfbp.py; soft: uprobes.py): their queue, the looks at the rings, pacing the target."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Sequence

from ...events import DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from . import _ffi
from .cpurings import ProbeRegisters
from .state import Process
from .stops import Events, Tracees

# Sampled breakpoint hits (perfbp.py) waiting in the queue beyond which the target is
# stopped until the engine catches up: it can hit far faster than records are written.
_SAMPLE_BACKLOG = 10000
# s: how often a blocked wait looks at the rings. A ring holds some 40,000 hits, which
# takes a tight loop 10 ms or more even where a hit costs 0.25 µs (here about 10 µs).
SAMPLE_TICK = 0.01
_COLLECT_EVERY = 64       # queued events handed out between two looks at the rings


def _time_of(event: DebugEvent) -> float:
    return event.info.time or 0.0      # type: ignore[union-attr]  # a sampled hit's ExceptionInfo


class Sampling:
    """The sampled hits of every traced process, in a queue of their own.

    Sampled hits hold no thread, so none may delay a resume, and they come in far
    faster than stops. A queued event goes out after the hits collected before it
    (`due` of them), not after later ones."""

    def __init__(self, tracees: Tracees, read_stops: Callable[[], None]) -> None:
        self._t = tracees
        self._read_stops = read_stops    # decode the stops that came in, without waiting
        self.samples: deque[DebugEvent] = deque()
        self.active = False          # some thread has a sampled breakpoint
        self.due: int | None = None  # sampled hits still to go before the queue's head
        self._handed = 0             # events handed out, for looking at the rings now and then
        # One per probed address: a sampled soft hit is a BREAKPOINT, as its int3 stop would be.
        self._soft: dict[int, ExceptionInfo] = {}
        # Hardware hits after the last look's start, held back for soft hits before them.
        self._held: list[DebugEvent] = []

    def next(self, deadline: float | None) -> DebugEvent | None:
        """The next sampled hit to hand out, if one is due before the queued events;
        pauses and releases targets. A queued event waits for the hits collected up to
        when it is first looked at, not for hits that keep coming after it."""
        self._handed += 1
        if not self.samples or self._handed % _COLLECT_EVERY == 0:
            # The hits in the rings count too: turning a full ring into events takes long
            # enough for the target to fill it again (and lose hits) meanwhile.
            self._pace(self._t.probes.waiting())
            self.collect()
            self._read_stops()
            self._pace()
        if not self.samples or (deadline is not None and time.monotonic() >= deadline):
            return None
        if self._t.queue:
            if self.due is None:
                self.due = len(self.samples)
            if self.due == 0:
                return None            # the queue's head now
            self.due -= 1
        return self.samples.popleft()

    def collect(self, *, final: bool = False, taken: Sequence[DebugEvent] = ()) -> None:
        """Take what every process's rings hold into the queue of sampled hits. With
        sampled soft breakpoints too, the hits of both kinds are merged by time, up to
        when the look at the rings began (a later hit of one kind may have a hit of the
        other before it still unread: it waits for the next look; `final`: none waits).
        `taken`: sampled hits taken out of rings being closed, to go with them."""
        cutoff = None if final else time.monotonic()
        active = False
        mixed = bool(self._t.probes.active or self._t.probes.unread or self._held)
        before = len(self.samples)
        if self._held:
            self.samples.extend(self._held)
            self._held = []
        self.samples.extend(taken)
        for proc in self._t.procs.values():
            if proc.sampler.rings or proc.sampler.unread:
                self.samples.extend(self.events(proc))
                active = active or bool(proc.sampler.rings)
        hardware = len(self.samples)
        self.collect_probes(cutoff, final=final)
        if before < hardware < len(self.samples) or (mixed and hardware > before):
            # Hits of hardware and of soft breakpoints, each in order: merged by time.
            new = sorted((self.samples.pop() for _ in range(len(self.samples) - before)), key=_time_of)
            while cutoff is not None and new and _time_of(new[-1]) > cutoff:
                self._held.append(new.pop())
            self._held.reverse()
            self.samples.extend(new)
        self.active = active or self._t.probes.active or bool(self._held)

    def collect_probes(self, cutoff: float | None = None, *, final: bool = False) -> None:
        """Take the hits of sampled soft breakpoints into the queue, as BREAKPOINT events
        that carry their registers; those of processes no longer traced go. Hits after
        `cutoff` (time.monotonic()) wait for the next look (CodeProbes.take)."""
        probes = self._t.probes
        if not (probes.active or probes.unread):
            return
        procs, templates, code = self._t.procs, self._soft, EventCode.EXCEPTION_DEBUG_EVENT
        append, new, setattr_ = self.samples.append, object.__new__, object.__setattr__
        # The one Python loop per hit of the backend: the events made as the frozen
        # dataclasses' own __init__ would, without its per-field setattr and type check.
        for at, ip, ids, words, base in probes.take(None if final else time.monotonic() if cutoff is None else cutoff):
            pid = ids & 0xFFFFFFFF
            if pid not in procs:
                continue          # a fork child not followed, a process gone
            template = templates.get(ip)
            if template is None:
                template = templates[ip] = ExceptionInfo(
                    ExceptionCode.BREAKPOINT, ip, signal="SIGTRAP", si_code=_ffi.SI_KERNEL)
            event = new(DebugEvent)
            setattr_(event, "__dict__", {"code": code, "pid": pid, "tid": ids >> 32,
                                         "info": template.sampled(ProbeRegisters(words, base), at / 1e9)})
            append(event)

    def events(self, proc: Process) -> Events:
        """The hits proc's sampler holds, as SINGLE_STEP events that carry their registers."""
        samples = proc.sampler.take()
        if not samples:
            return []
        pid, code = proc.pid, EventCode.EXCEPTION_DEBUG_EVENT
        templates: dict[tuple[int, ...], ExceptionInfo] = {}     # one per set of slots
        events: list[DebugEvent] = []
        append, new, setattr_ = events.append, object.__new__, object.__setattr__
        for tid, address, slots, at, registers in samples:
            template = templates.get(slots)
            if template is None:
                template = templates[slots] = ExceptionInfo(
                    ExceptionCode.SINGLE_STEP, address, signal="SIGTRAP", si_code=_ffi.TRAP_HWBKPT,
                    hw_slots=slots)
            event = new(DebugEvent)      # as in collect_probes
            setattr_(event, "__dict__", {"code": code, "pid": pid, "tid": tid,
                                         "info": template.sampled(registers, at)})
            append(event)
        return events

    def _pace(self, waiting: int = 0) -> None:
        """Pause a process whose sampled hits pile up faster than the engine takes them
        (every thread stopped, and any continued meanwhile kept stopped: Tracees.cont),
        and let it go once half the backlog is gone: its rings then never fill."""
        t = self._t
        backlog = len(self.samples) + waiting
        for proc in list(t.procs.values()):     # a thread may report the exit of all
            sampling = bool(proc.sampler.rings) or t.probes.has(proc.pid)
            if backlog > _SAMPLE_BACKLOG and proc.paused is None and sampling:
                t.pause(proc)
            elif proc.paused is not None and (backlog <= _SAMPLE_BACKLOG // 2 or not sampling):
                t.release(proc)
        t.paused.intersection_update(t.procs.keys())

    def program(self, proc: Process, tid: int) -> None:
        """Set proc's hardware breakpoints in stopped thread `tid`: a perf event for
        each sampled one where perf allows, debug registers for the rest."""
        sampled = proc.sampler.apply(tid, {s: proc.hw.addresses[s] for s in proc.hw.sampled})
        proc.hw.apply(tid, without=sampled)
        self.active = self.active or bool(sampled)

    def take(self) -> list[DebugEvent]:
        """The Backend's take_samples: the session ends, so later hits are none of its
        business (a target that runs on would fill the rings meanwhile: not lost hits)."""
        self._t.probes.stop()
        self.collect(final=True)
        taken = list(self.samples)
        self.samples.clear()
        return taken

    def problems(self) -> list[str]:
        """The Backend's sampling_problems."""
        t = self._t
        lost = t.sampling_lost + sum(p.sampler.lost for p in t.procs.values())
        problems = [f"hardware breakpoints stopped the target at every hit: {reason}"
                    for reason in sorted(t.sampling_refused)]
        if lost:
            problems.append(f"{lost} hits of sampled hardware breakpoints were lost: the target outran "
                            "instrument (--no-sampling stops the target at every hit instead)")
        return problems + t.probes.problems()
