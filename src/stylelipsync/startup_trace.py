"""Start-up trace: wall-clock marks of the steps before `generate` writes its first frame.

Set ``STYLELIPSYNC_STARTUP_TRACE=1`` and every `mark` prints ``stylelipsync-startup <unix time> <step>`` to
stderr, on any thread; unset, `mark` costs one dictionary lookup. `benchmarks/bench_startup.py` starts the
README main command with it and reads the lines to report time-to-first-frame and where the time went. The
standard library only: this module is imported before anything heavy.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "STYLELIPSYNC_STARTUP_TRACE"
PREFIX = "stylelipsync-startup"
FIRST_FRAME = "first frame encoded"
"""The last step of start-up: the encoder has taken the first output frame."""

_seen: set[str] = set()


def mark(step: str, *, once: bool = False) -> None:
    """Print the time of `step` when tracing is on; with `once`, only its first occurrence."""
    if not os.environ.get(ENV):
        return
    if once:
        if step in _seen:
            return
        _seen.add(step)
    print(f"{PREFIX} {time.time():.6f} {step}", file=sys.stderr, flush=True)
