"""Symbol tables of system libraries kept on disk by build id, so a run does not parse libc again.

Reading libc's 3000 symbols and its PLT costs ~25-50 ms a run; loading the finished
table back costs ~1-2 ms. The key is the file's GNU build id, which changes with every
build of the library, so an upgraded libc is a new entry and a stale one is never read.
The file's size is part of the key too: a separate debug file (/usr/lib/debug/.build-id/)
carries its library's build id with a fuller symbol table.
Only libraries under the system directories are kept: a user's own program is rebuilt
all the time and would fill the directory. Files live in $XDG_CACHE_HOME/instrument/symbols
(~/.cache/instrument/symbols by default), one per build id; a file that cannot be read,
is cut short or is not what this version writes is ignored (and rewritten), and a cache
directory that cannot be written costs nothing but the time saved.
"""

from __future__ import annotations

import marshal
import os
import tempfile
from typing import Any

# Bump when the stored tuple changes shape or meaning (the ranking rules of elf.py, say).
FORMAT = "instrument-symbols-1"
SYSTEM_DIRS = ("/usr/", "/lib/", "/lib32/", "/lib64/", "/libx32/")

Arrays = tuple[dict[str, int], list[int], list[int], list[int], list[str], list[bool]]


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "instrument", "symbols")


def is_system(path: str) -> bool:
    return path.startswith(SYSTEM_DIRS)


def _file(build_id: str, size: int) -> str | None:
    if not build_id or not all(c in "0123456789abcdef" for c in build_id):
        return None     # never a path out of the directory
    return os.path.join(cache_dir(), f"{build_id}-{size}.sym")


def load(build_id: str, size: int) -> Arrays | None:
    """The arrays stored for a file of `build_id` and `size` bytes, or None (no entry,
    unreadable, corrupt)."""
    name = _file(build_id, size)
    if name is None:
        return None
    try:
        with open(name, "rb") as f:
            value: Any = marshal.loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not (isinstance(value, tuple) and len(value) == 8 and value[0] == FORMAT and value[1] == build_id):
        return None
    by_name, ifuncs, starts, ends, names, sized = value[2:]
    if not (isinstance(by_name, dict) and all(isinstance(x, list) for x in (ifuncs, starts, ends, names, sized))
            and len(starts) == len(ends) == len(names) == len(sized)):
        return None
    return by_name, ifuncs, starts, ends, names, sized


def store(build_id: str, size: int, arrays: Arrays) -> None:
    """Keep `arrays` for `build_id` and `size`; silently nothing when the directory cannot be written."""
    name = _file(build_id, size)
    if name is None:
        return
    try:
        os.makedirs(os.path.dirname(name), exist_ok=True)
        # Written aside and renamed: a concurrent reader (parallel triage workers) sees
        # the old file or the whole new one, never half of it.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(name), prefix=".sym-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps((FORMAT, build_id, *arrays)))
            os.replace(tmp, name)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
