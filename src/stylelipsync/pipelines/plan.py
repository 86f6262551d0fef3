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


def open_writers(stack: ExitStack, plan: RenderPlan, crop_size: int) -> list[VideoWriter]:
    """The output writer (with the speech) and, if the plan asks for one, the `crop_size`² crop writer; both
    closed by `stack`. Shared by the engines so that every output is written the same way."""
    sizes = [(plan.output, plan.width, plan.height)]
    if plan.crop_path is not None:
        sizes.append((plan.crop_path, crop_size, crop_size))
    return [
        stack.enter_context(
            VideoWriter(
                path,
                plan.fps,
                w,
                h,
                audio=plan.audio,
                sample_rate=plan.audio_rate,
                protect=plan.protect,
                preset=OUTPUT_PRESET,
            )
        )
        for path, w, h in sizes
    ]
