#!/usr/bin/env python3
"""The issue-18 stress test, round after round: it must never flake.

    python bench/stress.py              # 20 rounds of 20 sessions each
    python bench/stress.py --rounds 5

Each round is tests/integration/test_stress.py's: a 4-thread program that checks its own
registers and text, attached 20 times with soft, hardware and memory breakpoints, the tool
ended 5 times each by SIGINT, SIGTERM, --timeout and a closed pipe; after every session
its text bytes, page protections, signal masks, debug registers and results are compared
with those before. Prints each round's outcome and the count of failed rounds; exits 1 if
any failed. Times are printed for information only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_stress import stress_round  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "stress4"
        subprocess.run(["gcc", "-g", "-O1", "-msse4.1", "-o", str(binary),
                        str(ROOT / "tests/targets/stress4.c"), "-lpthread"], check=True)
        failed = 0
        for n in range(1, args.rounds + 1):
            start = time.monotonic()
            try:
                stress_round(str(binary), Path(tmp))
                outcome = "ok"
            except Exception:          # noqa: BLE001 - a failed round is reported, the next one runs
                failed += 1
                outcome = "FAILED\n" + traceback.format_exc()
            print(f"round {n}/{args.rounds}: {outcome} ({time.monotonic() - start:.0f} s)", flush=True)
    print(f"{failed} of {args.rounds} rounds failed ({args.rounds * 20} sessions)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
