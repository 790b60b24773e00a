"""The Windows debug backend: kernel32's debugging API through ctypes (importable on any OS).

kernel32 is loaded only when a `WindowsBackend` is created; `decode_event`
turns raw DEBUG_EVENT bytes into events anywhere (the replay tests use it).
"""

from __future__ import annotations

from .debuggee import WindowsBackend
from .decode import decode_event

__all__ = ["WindowsBackend", "decode_event"]
