"""The core-file backend: a dumped Linux x86-64 process (an ELF core) read through the Backend boundary.

Pure Python over mmap and struct, no ctypes: a core reads the same on any
host. `open_core(path, exe=None)` gives the backend.
"""

from __future__ import annotations

from .backend import CORE_CAPABILITIES, CoreBackend, open_core

__all__ = ["CORE_CAPABILITIES", "CoreBackend", "open_core"]
