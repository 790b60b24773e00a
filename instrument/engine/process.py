"""The per-process state the engine and its helpers share: int3 sites, sampled sites, armed breakpoints, pending returns.

One `ProcessState` per traced process. It sits below everything else in the
engine (breakpoints, stops, hit dispatch, the session), which all read and
change it; it knows nothing of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from ..backend.base import Backend
from ..errors import DebuggerError
from ..events import Module
from .sites import INT3, RETURN_USER, PendingReturn, SiteState, SoftSite

_IN = SiteState.IN
_PARENT_ONLY = frozenset({RETURN_USER})


class Modules(Protocol):
    """What the engine asks of a process's module map (symbols.modules.ModuleMap)."""

    def add(self, module: Module) -> None: ...
    def remove(self, base: int) -> Module | None: ...
    def extent(self, base: int) -> tuple[int, int] | None: ...
    def find(self, address: int) -> Module | None: ...
    def resolve(self, name: str) -> int: ...
    def is_ifunc(self, address: int) -> bool: ...
    def in_main_image(self, address: int) -> bool: ...
    def name_indirect(self, implementation: int, resolver: int) -> None: ...
    def describe(self, address: int, *, lines: bool = True, return_address: bool = False) -> dict[str, Any]: ...
    def symbol_text(self, address: int) -> str: ...
    def image_of(self, module: Module) -> Any: ...      # a symbols ElfImage / PeImage, or None
    def __iter__(self) -> Iterator[Module]: ...


@dataclass
class ProcessState:
    pid: int
    backend: Backend
    modules: Modules
    sites: dict[int, SoftSite] = field(default_factory=dict)
    # Sampled soft breakpoints (Backend.sample_code): address -> their ids. An address
    # has either these or an int3 site, never both (an int3 cannot sit on a uprobe), and
    # the ids that were sampled there and are gone, so that their late hits are known.
    sampled: dict[int, set[str]] = field(default_factory=dict)
    unsampled: dict[int, set[str]] = field(default_factory=dict)
    # Int3 sites of sampled soft breakpoints that become uprobes after so many more
    # stops (BreakpointPlan.sample_after; engine/hits.py switches them): address -> stops left.
    adaptive: dict[int, int] = field(default_factory=dict)
    armed: dict[str, int] = field(default_factory=dict)           # bp id -> where: address (soft, memory) / slot
    placed: dict[str, int] = field(default_factory=dict)          # bp id -> the address it is armed at
    hw_slots: dict[int, str] = field(default_factory=dict)        # slot -> bp id
    guards: dict[int, tuple[str, int]] = field(default_factory=dict)  # address -> (bp id, size)
    returns: dict[int, list[PendingReturn]] = field(default_factory=dict)
    image_path: str = ""
    alive: bool = True
    unarmable: set[str] = field(default_factory=set)    # bp ids whose address cannot take them
    retired: set[int] = field(default_factory=set)      # addresses whose int3 we have taken out
    ifunc_targets: dict[int, int] = field(default_factory=dict)   # indirect function -> implementation
    # Attribution (issue 16): thread ids in creation order (the first is the main thread),
    # the depth in the process tree (0: the started process), the parent's image, and
    # whether this is a fork child still running its parent's image (no exec yet).
    threads: list[int] = field(default_factory=list)
    # Debug information its modules opened for variables by name (symbols.dwarf_vars), for its life.
    debug_info: dict[Any, Any] = field(default_factory=dict)
    depth: int = 0
    parent_exe: str | None = None
    forked_without_exec: bool = False

    def read(self, address: int, size: int) -> bytes:
        """Target memory as the program sees it: the original bytes under our int3s."""
        data = self.backend.read_memory(self.pid, address, size)
        sites = self.sites
        # The sites inside the range: by address when the range is the smaller (an 8-byte
        # read with a thousand breakpoints armed), else by walking the sites.
        inside = ([sites[a] for a in range(address, address + size) if a in sites] if size < len(sites)
                  else [s for s in sites.values() if address <= s.address < address + size])
        for site in inside:
            if site.state is _IN:
                off = site.address - address
                data = data[:off] + site.original + data[off + 1:]
        return data

    def write(self, address: int, data: bytes) -> None:
        """Write target memory, keeping our int3 bytes in place over a patch."""
        end = address + len(data)
        for site in self.sites.values():
            if site.address + len(site.code) > address and site.address < end:
                # Keep the saved instruction bytes in step with what the program now holds.
                code = bytearray(site.code)
                for i in range(max(address, site.address), min(end, site.address + len(code))):
                    code[i - site.address] = data[i - address]
                site.code = bytes(code)
            if site.state is _IN and address <= site.address < end:
                off = site.address - address
                site.original = data[off:off + 1]
                data = data[:off] + INT3 + data[off + 1:]
        self.backend.write_memory(self.pid, address, data)

    def raw_write(self, address: int, data: bytes) -> None:
        self.backend.write_memory(self.pid, address, data)

    def add_user(self, address: int, user: str) -> None:
        """`user` (a breakpoint id, RETURN_USER, IFUNC_USER) wants an int3 at `address`.
        Sampled breakpoints there become users of the int3 (their hits then stop too)."""
        site = self.sites.get(address)
        if site is None:
            site = self.sites[address] = SoftSite(address)
        moved = self.sampled.pop(address, None)
        if moved:
            self.backend.unsample_code(self.pid, address)
            site.users |= moved
        site.users.add(user)
        site.insert(self.read, self.raw_write)

    def add_sampled_user(self, address: int, user: str) -> str | None:
        """Sampled soft breakpoint `user` wants the hits of `address` reported without a
        stop; None when they are, else why not (it is then a user of an int3 there)."""
        users = self.sampled.get(address)
        if users is not None:
            users.add(user)
            return None
        if address in self.sites:
            reason: str | None = "an int3 of a stopping breakpoint is on the same instruction"
        else:
            reason = self.backend.sample_code(self.pid, address)
            if reason is None:
                self.sampled[address] = {user}
                self.unsampled.pop(address, None)
                return None
        self.add_user(address, user)
        return reason

    def add_adaptive_user(self, address: int, user: str, after: int) -> None:
        """Sampled soft breakpoint `user` stops at `address` as an int3 for `after` hits
        there, then becomes a uprobe (switch_to_sampled)."""
        if address in self.sampled:
            self.sampled[address].add(user)     # a uprobe there already
            return
        self.add_user(address, user)
        left = self.adaptive.get(address)
        self.adaptive[address] = after if left is None else min(left, after)

    def switch_to_sampled(self, address: int, tid: int) -> str | None:
        """The int3 at `address` becomes a uprobe (Backend.sample_code), at a stop of
        thread `tid` that has run the instruction already. Every other thread is held
        meanwhile, so that none passes there between the two: no hit lost, none counted
        twice (a thread that trapped on the int3 before finds it retired, runs the
        instruction again, and the uprobe reports that hit). None when done; else why
        not, and the int3 stays, for good."""
        self.adaptive.pop(address, None)
        site = self.sites.get(address)
        if site is None or site.state is not _IN:
            return "no int3 there"
        self.backend.hold_others(tid)
        site.remove(self.raw_write)
        reason = self.backend.sample_code(self.pid, address)
        if reason is not None:
            site.insert(self.read, self.raw_write)
            return reason
        del self.sites[address]
        self.retired.add(address)
        self.sampled[address] = set(site.users)
        self.unsampled.pop(address, None)
        return None

    def drop_sampled_user(self, address: int, user: str) -> bool:
        """`user` is done with `address`; False: it was no sampled user there."""
        users = self.sampled.get(address)
        if users is None or user not in users:
            return False
        users.discard(user)
        self.unsampled.setdefault(address, set()).add(user)
        if not users:
            del self.sampled[address]
            if self.alive:
                self.backend.unsample_code(self.pid, address)
        return True

    def drop_user(self, address: int, user: str, *, write: bool = True) -> None:
        """`user` is done with `address`; the int3 goes with its last user (`write` False:
        the memory is gone, nothing may be written back)."""
        site = self.sites.get(address)
        if site is None:
            return
        site.users.discard(user)
        if not site.users:
            if self.alive and write:
                site.remove(self.raw_write)
                self.retired.add(address)
            del self.sites[address]
            self.adaptive.pop(address, None)

    def retired_trap(self, address: int) -> bool:
        """Whether an int3 trap at `address` came from an int3 of ours that is gone now:
        another thread ran into it before we took it out (a spent breakpoint, a return
        site no thread waits on), and its trap was still queued. Such a trap must not
        reach the program, whose SIGTRAP would kill it."""
        if address not in self.retired:
            return False
        try:
            return self.backend.read_memory(self.pid, address, 1) != INT3
        except DebuggerError:
            return False

    def inherit_sites(self, parent: ProcessState) -> None:
        """A fork child's memory is a copy of its parent's, int3 bytes included: take
        over the parent's sites as they are instead of inserting again. Pending returns
        belong to the parent's threads, so their int3s go."""
        # The backend gives a followed child its parent's sampled sites (Backend.sample_code).
        self.sampled = {address: set(users) for address, users in parent.sampled.items()}
        self.adaptive = dict(parent.adaptive)
        for address, site in parent.sites.items():
            copy = SoftSite(address, site.original, site.state, site.users - _PARENT_ONLY, site.code)
            if copy.users:
                self.sites[address] = copy
            elif copy.state is _IN:
                copy.remove(self.raw_write)

    def patched_bytes(self) -> dict[int, bytes]:
        """The original bytes under every int3 we have in this process now."""
        return {a: s.original for a, s in self.sites.items() if s.state is _IN}
