"""Pass-1 hook of the mouth bank: keep the lower-face crop of every tracked source frame, on disk.

While the tracker has a frame, the frame is cropped with the similarity `crop_transform` computes from that
frame's own (raw) landmarks, at a side close to the face's native size (no detail thrown away, none
invented), and the rows from `REGION_TOP` of the side down are appended to a `FrameStore`: positioned writes
to an unlinked temporary file, so the resident memory does not grow with the video. Videos longer than the
cap keep whole runs of `SEGMENT` frames, evenly spread, so the bank still plays forward and still covers
the whole recording.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.crop import DEFAULT_FRAMING, crop_transform, warp_image
from stylelipsync.face.landmarks import LEFT_EYE, RIGHT_EYE
from stylelipsync.media.frame_store import FrameStore
from stylelipsync.pipelines.sources import open_store

BANK_CAP = 3000
"""Most bank entries kept from one video (about 2 minutes at 25 fps)."""
SEGMENT = 25
"""Length of the runs kept from videos longer than the cap."""
REGION_TOP = 0.4
"""Stored rows start at this fraction of the crop side (just above the nose tip): the mask never reaches
higher."""
MIN_SIDE, MAX_SIDE = 128, 384
"""Crop side limits. 384 px already resolves lips finer than the sharpness metric and the eye do at normal
viewing; larger faces are reduced with area averaging."""


def native_side(landmarks: NDArray[np.floating]) -> int:
    """Crop side (multiple of 32 in [MIN_SIDE, MAX_SIDE]) matching the face's size in the frame."""
    lm = np.asarray(landmarks, dtype=np.float64)
    d = float(np.linalg.norm(lm[list(LEFT_EYE)].mean(axis=0) - lm[list(RIGHT_EYE)].mean(axis=0)))
    side = DEFAULT_FRAMING.side * d
    return int(np.clip(32 * round(side / 32), MIN_SIDE, MAX_SIDE))


def kept_frames(num_frames: int, cap: int = BANK_CAP, segment: int = SEGMENT) -> NDArray[np.bool_]:
    """(num_frames,) which source frames the bank keeps: all, or evenly spread runs of `segment` frames."""
    keep = np.zeros(num_frames, dtype=bool)
    if num_frames <= cap:
        keep[:] = True
        return keep
    segments = math.ceil(num_frames / segment)
    chosen = np.unique(np.linspace(0, segments - 1, cap // segment).round().astype(int))
    for k in chosen:
        keep[k * segment : (k + 1) * segment] = True
    return keep


class CropCollector:
    """Collects bank crops during pass 1 (a `FrameCollector`); `size` None = chosen from the first face."""

    def __init__(self, num_frames: int, size: int | None = None, cap: int = BANK_CAP) -> None:
        self.keep = kept_frames(num_frames, cap)
        self.size = size
        self.store: FrameStore | None = None
        self.frames: list[int] = []
        self.matrices: list[NDArray[np.float64]] = []

    @property
    def top(self) -> int:
        """First stored row of a crop."""
        return round(REGION_TOP * (self.size or 0))

    def __call__(self, t: int, frame: NDArray[np.uint8], landmarks: NDArray[np.float32] | None) -> None:
        if landmarks is None or t >= len(self.keep) or not self.keep[t]:
            return
        if self.size is None:
            self.size = native_side(landmarks)
        m = crop_transform(landmarks, self.size)
        if not np.isfinite(m).all():
            return
        if self.store is None:
            self.store = open_store(self.size - self.top, self.size)
        crop = warp_image(frame, m, (self.size, self.size), interpolation=cv2.INTER_LANCZOS4)
        self.store.append(np.ascontiguousarray(crop[self.top :]))
        self.frames.append(t)
        self.matrices.append(m)

    def close(self) -> None:
        """Free the stored crops."""
        if self.store is not None:
            self.store.close()
