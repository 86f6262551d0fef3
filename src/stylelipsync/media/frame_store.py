"""Random access to decoded frames without holding them in memory: raw RGB frames in a temporary file.

Looping a short video under long audio (ping-pong) visits frames backwards, which a streaming decoder cannot
do. The frames are decoded once into an uncompressed file and read back with positioned reads (no mmap, so
the resident set stays flat whatever the video length).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from stylelipsync.errors import OutputError


class FrameStore:
    """Append-then-read store of equally sized uint8 RGB frames backed by a temporary file."""

    def __init__(self, height: int, width: int, directory: str | Path | None = None) -> None:
        self.shape = (height, width, 3)
        self.frame_bytes = height * width * 3
        fd, name = tempfile.mkstemp(prefix="stylelipsync-frames-", suffix=".raw", dir=directory)
        self._fd = fd
        self.path = Path(name)
        self.path.unlink()  # the open descriptor keeps the data; a killed run leaves no multi-GB file behind
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, frame: np.ndarray) -> None:
        """Store the next frame (H, W, 3) uint8."""
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {self.shape}, got {frame.dtype} {frame.shape}")
        try:
            os.pwrite(self._fd, np.ascontiguousarray(frame).tobytes(), self._count * self.frame_bytes)
        except OSError as exc:
            raise OutputError(
                f"cannot cache decoded frames in {self.path.parent}: {exc.strerror}. "
                "Free disk space or set TMPDIR to a folder with room."
            ) from exc
        self._count += 1

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} out of range 0..{self._count - 1}")
        data = os.pread(self._fd, self.frame_bytes, index * self.frame_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape).copy()

    def close(self) -> None:
        """Release the backing storage (the file has no name since creation, so closing frees it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
