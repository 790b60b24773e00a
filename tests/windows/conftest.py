"""tests/windows runs in two places: inside a Windows CPython (the live suite,
test_live_backend.py, started by .ci/wine.sh) and on Linux (test_wine_driver.py,
which starts .ci/wine.sh when INSTRUMENT_WINE=1). Each side ignores the other's file."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    collect_ignore = ["test_wine_driver.py"]
else:
    collect_ignore = ["test_live_backend.py", "test_live_run.py"]
