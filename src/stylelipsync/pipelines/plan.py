"""What pass 2 of `generate` needs, whichever engine renders: the plan, the stage timer, the writers.

Kept apart from `pipelines.render` (the network's pass 2) so that the bank engine, which runs no network,
imports no PyTorch through it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stylelipsync.face.mask import PoseMasker
from stylelipsync.face.track import FaceTrack
from stylelipsync.media import VideoWriter
from stylelipsync.pipelines.options import FrameOutput

CROP_SIZE = 256
"""Crops, masks and paste-back live at 256² (the spec's mask processing is defined there); the model may
run at a lower resolution, in which case its input is resized down and its output up."""

Callback = Callable[[FrameOutput], None]
Progress = bool | Callable[[int, int], None]


@runtime_checkable
class StageProgress(Protocol):
    """A `progress=` receiver that hears every stage of a pipeline call, not only the rendering: the call
    reports `stage(name, done, total)` with name "tracking" (source frames tracked, on the calling thread),
    "rendering" (output frames through the engine, on the calling thread) or "encoding" (output frames taken
    by the video encoder; on the writer thread when pipelined). The stages overlap when pipelined; the file
    is finished (encoder flushed, audio muxed) after the last "encoding" report. It may raise to stop the
    call (the exception comes out of the call)."""

    def stage(self, name: str, done: int, total: int) -> None:
        """`done` of `total` frames of stage `name` are through."""


OUTPUT_PRESET = "veryfast"
"""x264 preset of the outputs (at the writer's CRF 18): at 720p it costs 28 ms of CPU per frame against 69 ms
for "medium", for files of about the same size; the encoder shares the CPU with the network."""


class StageTimer:
    """Wall-clock seconds per named stage, accumulated over a call (thread-safe: stages overlap when
    pipelined, so their sum can exceed the call's wall time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        """Add `seconds` to stage `name`."""
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)


@dataclass
class RenderPlan:
    """Everything pass 2 needs, resolved by the pipeline from the inputs and pass 1."""

    video: Path
    protect: list[Path]
    output: Path
    crop_path: Path | None
    fps: float
    width: int
    height: int
    src_idx: np.ndarray
    track: FaceTrack
    transforms: np.ndarray
    masker: PoseMasker
    reference: int
    audio: np.ndarray
    audio_rate: int
    batch_size: int
    encoded: Callable[[int], None] | None = None
    """Told how many frames the output's encoder has taken, after each one (on the thread that writes):
    the encoding stage of a `StageProgress`."""


class _CountingWriter(VideoWriter):
    """The output writer of a plan with `encoded`: reports its frame count after each frame."""

    def __init__(self, *args: Any, encoded: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoded, self._count = encoded, 0

    def write(self, image: np.ndarray) -> None:
        super().write(image)
        self._count += 1
        self._encoded(self._count)


def open_writers(stack: ExitStack, plan: RenderPlan, crop_size: int) -> list[VideoWriter]:
    """The output writer (with the speech) and, if the plan asks for one, the `crop_size`² crop writer; both
    closed by `stack`. Shared by the engines so that every output is written the same way."""
    sizes = [(plan.output, plan.width, plan.height)]
    if plan.crop_path is not None:
        sizes.append((plan.crop_path, crop_size, crop_size))
    writers: list[VideoWriter] = []
    for path, w, h in sizes:
        args = (path, plan.fps, w, h)
        options: dict[str, Any] = {
            "audio": plan.audio,
            "sample_rate": plan.audio_rate,
            "protect": plan.protect,
            "preset": OUTPUT_PRESET,
        }
        if plan.encoded is not None and not writers:
            writer: VideoWriter = _CountingWriter(*args, encoded=plan.encoded, **options)
        else:
            writer = VideoWriter(*args, **options)
        writers.append(stack.enter_context(writer))
    return writers
