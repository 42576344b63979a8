"""The fault suite: injects each fault of tests/test_faults.py N times and prints what survived.

Faults: kill -9 of `nas search` during training and during storage writes (random moments), two
searches on one SQLite study and on one PostgreSQL study (a server started from Debian's packages),
trials running out of memory, a Ray worker killed mid-trial. Printed per fault: injected, survived,
finished trials lost (must be 0), points trained twice (must be 0).

    python benchmarks/faults.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="injections of each fault")
    args = parser.parse_args()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_faults.py")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NAS_FAULT_REPEAT": str(args.repeat)},
    )
    lines = run.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if "fault suite" in line), None)
    print(f"fault suite, each fault injected {args.repeat} times")
    if start is None:
        print(run.stdout[-3000:], run.stderr[-2000:])
        raise SystemExit(1)
    for line in lines[start + 1 : -1]:
        if line.startswith("=") or not line.strip():
            break
        print(line)
    print(lines[-1])  # pytest's own verdict: passed / failed / skipped
    raise SystemExit(run.returncode)


if __name__ == "__main__":
    main()
