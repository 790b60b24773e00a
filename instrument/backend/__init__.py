"""The debug backends by name, and the one this operating system debugs with (chosen lazily, once).

A new backend is a package (or module) here plus one registration: a factory
below and its line in BACKENDS. Each factory imports its backend only when
called, so `import instrument` loads no other OS's ctypes layer (HOUSE rule 2).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable

from ..errors import TargetError

if TYPE_CHECKING:
    from .base import Backend


def _linux(**options: Any) -> Backend:
    from .linux.tracee import LinuxBackend
    return LinuxBackend(**options)


def _windows(**options: Any) -> Backend:
    from .windows.debuggee import WindowsBackend
    return WindowsBackend(**options)


def _fake(**options: Any) -> Backend:
    from .fake import FakeBackend
    return FakeBackend(**options)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "linux": _linux,
    "windows": _windows,
    "fake": _fake,
}

# sys.platform prefix -> the backend that debugs this operating system's own processes.
NATIVE: dict[str, str] = {
    "linux": "linux",
    "win32": "windows",
}


def native_backend_name() -> str:
    """The BACKENDS name for this operating system; TargetError when it has none."""
    for prefix, name in NATIVE.items():
        if sys.platform.startswith(prefix):
            return name
    raise TargetError(f"no debug backend for this operating system ({sys.platform})")


def get_backend(name: str | None = None, **options: Any) -> Backend:
    """A new backend: `name` from BACKENDS (default: this OS's), made with `options`."""
    chosen = name if name is not None else native_backend_name()
    make = BACKENDS.get(chosen)
    if make is None:
        raise TargetError(f"unknown debug backend '{chosen}' (expected one of {', '.join(BACKENDS)})")
    return make(**options)
