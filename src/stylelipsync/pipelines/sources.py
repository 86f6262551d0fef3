"""Source frames by index for the second pass, with memory that does not depend on the video's length.

Three ways to get frame i, chosen from the order in which the output timeline visits the source frames:

* a still photo: the one image, always;
* a forward walk (the default): a fresh decoder is walked forwards; when the timeline jumps back to frame 0
  (forward loop) the decoder is restarted. Nothing is stored, the video is decoded once per loop;
* an on-disk `FrameStore` filled during the first pass, when the timeline walks backwards (ping-pong loop
  under audio longer than the video). It costs width × height × 3 bytes of temporary disk per source frame
  and no memory (positioned reads, no mmap).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from stylelipsync.errors import OutputError
from stylelipsync.media import Frame, VideoReader
from stylelipsync.media.frame_store import FrameStore
from stylelipsync.pipelines.queues import POLL_SECONDS, put_unless_stopped

T = TypeVar("T")


class _Raised:
    """What the prefetch thread puts in the queue when the iterable raised."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def prefetch(items: Iterable[T], size: int) -> Generator[T, None, None]:
    """Iterate `items` on a background thread, at most `size` items ahead (bounded memory).

    Items come out in order; an exception of the iterable is raised here, at the point it occurred. When
    the caller stops early (or fails), the thread stops, and a generator it was walking is closed there.
    """
    buffer: queue.Queue[object] = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def offer(value: object) -> bool:
        return put_unless_stopped(buffer, value, stop)

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as exc:
            offer(_Raised(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="stylelipsync-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                value = buffer.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not thread.is_alive() and buffer.empty():
                    raise RuntimeError("internal error: the prefetch thread ended without a result") from None
                continue
            if value is _END:
                return
            if isinstance(value, _Raised):
                raise value.exc
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def needs_store(indices: np.ndarray) -> bool:
    """True when the timeline steps backwards to a frame other than 0 (a forward walk cannot do that)."""
    if indices.size < 2:
        return False
    back = np.diff(indices) < 0
    return bool(np.any(back & (indices[1:] != 0)))


def open_store(height: int, width: int) -> FrameStore:
    """A temporary frame store; `OutputError` if the temporary folder cannot hold it."""
    try:
        return FrameStore(height, width)
    except OSError as exc:
        raise OutputError(
            f"cannot create a temporary frame cache ({exc.strerror}); set TMPDIR to a writable folder with "
            "room for the video's frames"
        ) from exc


class SourceFrames:
    """Frame i of the source, from a still, a store or a forward-walking decoder (see the module doc)."""

    def __init__(
        self,
        video: Path,
        fps: float,
        *,
        still: np.ndarray | None = None,
        store: FrameStore | None = None,
    ) -> None:
        self._video, self._fps = video, fps
        self._still, self._store = still, store
        self._reader: VideoReader | None = None
        self._frames: Iterator[Frame] | None = None
        self._index = -1
        self._frame: np.ndarray | None = None

    @property
    def store(self) -> FrameStore | None:
        """The frame store pass 1 must fill, or None."""
        return self._store

    def __getitem__(self, index: int) -> np.ndarray:
        if self._still is not None:
            return self._still
        if self._store is not None:
            return self._store[index]
        if index < self._index:
            self._restart()
        while self._index < index:
            self._advance()
        assert self._frame is not None
        return self._frame

    def _restart(self) -> None:
        self._close_reader()
        self._index, self._frame = -1, None

    def _advance(self) -> None:
        if self._frames is None:
            self._reader = VideoReader(self._video, fps=self._fps)
            self._frames = iter(self._reader)
        frame = next(self._frames, None)
        if frame is None:
            if self._frame is None:
                raise RuntimeError(f"internal error: {self._video} yielded no frame in the second pass")
            self._index += 1
            return
        self._index, self._frame = frame.index, frame.image

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader, self._frames = None, None

    def close(self) -> None:
        """Stop decoding and delete the frame store (if any)."""
        self._close_reader()
        if self._store is not None:
            self._store.close()
