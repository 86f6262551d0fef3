"""Status-poll latency of `stylelipsync serve` while 20 jobs run (issue #12): p95 must stay under 100 ms.

The scenario is the suite's `tests/test_serve.py::test_load_20_concurrent_jobs` (a real server, one worker,
20 jobs posted at once, a client polling a random job's status every 20 ms). In the suite it only checks
that the server never stalls (p95 within 10× the idle p95, at least 0.5 s), because an absolute latency
depends on what else the machine runs; this script runs the same test with the absolute limit switched on
(`STYLELIPSYNC_LOAD_P95_MS`) and prints its report. Run it on a quiet machine (or pinned to one core, as in
RESULTS.md) and add the printed line to RESULTS.md.

    nice -n 10 .venv/bin/python benchmarks/bench_serve_load.py [--p95-ms 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/test_serve.py::test_load_20_concurrent_jobs"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--p95-ms", type=float, default=100.0, help="limit on the poll latency's p95")
    args = parser.parse_args()
    env = dict(os.environ, STYLELIPSYNC_LOAD_P95_MS=str(args.p95_ms))
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", TEST]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    report = [line for line in result.stdout.splitlines() if line.startswith("serve load test:")]
    print(report[0] if report else result.stdout[-3000:])
    verdict = "met" if result.returncode == 0 else "NOT met (or the test failed)"
    print(f"p95 limit {args.p95_ms:g} ms: {verdict}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
