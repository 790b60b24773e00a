"""Objects parsed from a file, shared while the file is unchanged (realpath, mtime, size).

A triage run opens the same binaries for each of thousands of inputs; keying
on mtime and size makes a rebuilt binary a new entry."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

from ..errors import TargetError

T = TypeVar("T")


class FileCache(Generic[T]):
    def __init__(self, build: Callable[[str], T], size: int = 256) -> None:
        self._build = build
        self._size = size
        self._entries: OrderedDict[tuple[str, int, int], T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, error: type[TargetError] = TargetError) -> T:
        """The object built from `path`; raises `error` when the file cannot be read."""
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError as e:
            raise error(f"{path}: cannot read ({e.strerror or e})") from e
        key = (real, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._entries:            # None is a valid, cached answer
                self._entries.move_to_end(key)
                return self._entries[key]
        built = self._build(real)
        with self._lock:
            built = self._entries.setdefault(key, built)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return built

    def entries(self) -> dict[tuple[str, int, int], T]:
        """A copy of what is cached, by (realpath, mtime_ns, size)."""
        with self._lock:
            return dict(self._entries)
