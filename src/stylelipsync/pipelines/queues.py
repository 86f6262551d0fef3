"""Hand-over between threads through a bounded queue that gives up when told to stop.

A producer blocked on a full queue must notice that its consumer has gone (an error, a closed generator),
or it would wait forever: it waits in slices of `POLL_SECONDS` and checks its stop event between them. The
decoding thread of pass 1 (`sources.prefetch`), the network renderer's decode and encode threads and the live
session's feeding thread all hand over this way.
"""

from __future__ import annotations

import queue
import threading
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.1
"""How often a thread blocked on a queue checks whether it should stop."""


def put_unless_stopped(q: queue.Queue[T], item: T, stop: threading.Event) -> bool:
    """Put `item` into `q`, waiting for room, unless `stop` is set first; True if it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


__all__ = ["POLL_SECONDS", "put_unless_stopped"]
