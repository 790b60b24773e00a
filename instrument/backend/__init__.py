"""Choosing the debug backend of this operating system, lazily, once."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Backend


def get_backend() -> Backend:
    """A new backend for this OS. Imports its ctypes layer only now, so that
    `import instrument` works everywhere (HOUSE rule 2)."""
    if sys.platform.startswith("linux"):
        from .linux.tracee import LinuxBackend
        return LinuxBackend()
    if sys.platform == "win32":
        from .windows import debuggee
        return debuggee.WindowsBackend()  # type: ignore[attr-defined,no-any-return]
    from ..errors import TargetError
    raise TargetError(f"no debug backend for this operating system ({sys.platform})")
