"""Pass-1 hook of the mouth bank: keep the lower face of every tracked source frame, on disk.

While the tracker has a frame, a fixed-size box of the frame's own pixels around the lower face (from just
above the nose tip to below the chin, as wide as the face) is copied, not resampled: the renderer warps it
into the target frame once, so the bank's mouths keep every pixel of detail. The box's size is set by the
first face (with a margin for a face that comes closer); parts outside the frame are mirrored. Boxes go to a
`FrameStore`: positioned writes to an unlinked temporary file, so the resident memory does not grow with the
video. Videos longer than the cap keep whole runs of `SEGMENT` frames, evenly spread, so the bank still plays
forward and still covers the whole recording.
"""

from __future__ import annotations

import math
from concurrent.futures import Future

import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.crop import DEFAULT_FRAMING
from stylelipsync.face.landmarks import LEFT_EYE, PRONASALE, RIGHT_EYE
from stylelipsync.media.frame_store import FrameStore
from stylelipsync.pipelines.engines.bank.steady import FrameMotion
from stylelipsync.pipelines.sources import open_store

BANK_CAP = 3000
"""Most bank entries kept from one video (about 2 minutes at 25 fps)."""
SEGMENT = 25
"""Length of the runs kept from videos longer than the cap."""
BOX_WIDTH, BOX_HEIGHT = 2.9, 2.3
"""Size of the stored box in eye-centre distances of the first face (the face is about 2.3 wide, and the
nose tip to the chin about 1.6 high; the rest is margin for head motion, an opening jaw and a closer face)."""
BOX_TOP = 0.45
"""The box's top edge, in eye-centre distances above the nose tip: the mask never reaches higher."""
MIN_SIDE, MAX_SIDE = 128, 256
"""Side limits of the engine's face crops, where masks and the warp's geometry are computed. Pixels never pass
through them (the bank's boxes are resampled once, straight into the frame), so a larger face is not blurred
by a small crop; the masks are smooth and lose nothing at 256."""


def eye_distance(landmarks: NDArray[np.floating]) -> float:
    """3-D distance between the eye centres in pixels (does not shrink when the head turns)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return float(np.linalg.norm(lm[list(LEFT_EYE)].mean(axis=0) - lm[list(RIGHT_EYE)].mean(axis=0)))


def native_side(landmarks: NDArray[np.floating]) -> int:
    """Side of the engine's face crops (multiple of 32 in [MIN_SIDE, MAX_SIDE]) matching the face's size."""
    side = DEFAULT_FRAMING.side * eye_distance(landmarks)
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
    """Collects bank boxes during pass 1 (a `FrameCollector`); `size` None = chosen from the first face.

    `matrices[r]` maps frame pixels to stored box r's pixels (a translation), so landmarks go into a box with
    `warp_landmarks` like into any crop.
    """

    def __init__(self, num_frames: int, size: int | None = None, cap: int = BANK_CAP) -> None:
        self.keep = kept_frames(num_frames, cap)
        self.size = size
        self.box: tuple[int, int] | None = None
        self.store: FrameStore | None = None
        self.frames: list[int] = []
        self.matrices: list[NDArray[np.float64]] = []
        self.motion = FrameMotion()
        """The image's frame-to-frame motion of the stored boxes (for `steady.steady_shifts`)."""
        self.prediction: Future[NDArray[np.float64]] | None = None
        """The engine's audio → mouth-shape prediction, computed while pass 1 runs (see `MouthBankEngine`)."""

    def __call__(self, t: int, frame: NDArray[np.uint8], landmarks: NDArray[np.float32] | None) -> None:
        if landmarks is None or t >= len(self.keep) or not self.keep[t]:
            return
        lm = np.asarray(landmarks, dtype=np.float64)
        if not np.isfinite(lm).all():
            return
        d = eye_distance(lm)
        if self.size is None:
            self.size = native_side(lm)
        if self.box is None:
            self.box = (max(8, round(BOX_WIDTH * d)), max(8, round(BOX_HEIGHT * d)))
            self.store = open_store(self.box[1], self.box[0])
        w, h = self.box
        nose = lm[PRONASALE, :2]
        x0 = round(nose[0] - w / 2)
        y0 = round(nose[1] - BOX_TOP * d)
        assert self.store is not None
        box = _window(frame, x0, y0, w, h)
        self.store.append(box)
        self.motion.add(t, box, lm[:, :2] - (x0, y0))
        self.frames.append(t)
        self.matrices.append(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]))

    def close(self) -> None:
        """Free the stored boxes (and stop the motion worker)."""
        self.motion.close()
        if self.store is not None:
            self.store.close()


def _window(frame: NDArray[np.uint8], x0: int, y0: int, w: int, h: int) -> NDArray[np.uint8]:
    """frame[y0:y0+h, x0:x0+w], mirrored where it leaves the frame."""
    fh, fw = frame.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + w <= fw and y0 + h <= fh:
        return np.ascontiguousarray(frame[y0 : y0 + h, x0 : x0 + w])
    xs = _mirror(np.arange(x0, x0 + w), fw)
    ys = _mirror(np.arange(y0, y0 + h), fh)
    return np.ascontiguousarray(frame[ys[:, None], xs[None, :]])


def _mirror(index: NDArray[np.int64], size: int) -> NDArray[np.int64]:
    """Indices reflected into [0, size) (like BORDER_REFLECT_101)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    i = np.abs(index) % period
    return np.where(i >= size, period - i, i)
