"""Where a bank video's face really is in each frame: the landmarks' frame-to-frame noise replaced by the
image's own motion.

FaceMesh places a face with about a pixel of noise that is new in every frame and shared by all its points
(the whole mesh shifts). Measured relative to the eyes, as the jitter figure and a viewer read the mouth, that
noise cancels within one frame. But a pasted mouth comes from another frame: it is placed with the noise of
the bank frame's landmarks and of the target frame's, which do not cancel. On the held-out pairs this, not the
cuts, was the mouth's extra jitter: a bank played forward in step with the target (no cut) but 10 frames apart
was ×1.18 of the input, pasting each frame's own mouth onto itself ×0.96.

The image knows better than the landmarks from one frame to the next: two consecutive frames differ by the
head's true motion, which phase correlation refined by ECC on the nose and the cheeks beside it (the stored
bank boxes; the mouth left out) measures to a few hundredths of a pixel. So within each run of consecutive
frames, the landmarks' centre minus that integrated motion is the landmarks' noise plus a slow drift of the
integration; keeping only its slow part (Gaussian σ = `DRIFT_SIGMA_FRAMES`) gives the face's place with the
image's frame-to-frame precision and the landmarks' absolute place. Real head motion, fast or slow, is in the
image's motion, so the pasted mouth follows it without lag.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

from stylelipsync.face.landmarks import SUBNASALE

if TYPE_CHECKING:
    from stylelipsync.pipelines.engines.bank.collect import CropCollector

DRIFT_SIGMA_FRAMES = 5.0
"""σ (frames) of the slow part of landmarks minus image motion that is kept (the rest is landmark noise)."""
MIN_RESPONSE = 0.2
"""Phase correlation peaks below this (blur, occlusion, a cut in the video) end a run."""
MAX_STEP = 0.25
"""Frame-to-frame motions larger than this fraction of the patch end a run (a failed correlation)."""
NOSE_WINGS = (129, 358)
CENTRE_POINTS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 64, 294)
"""Eye corners and nose: the points whose centre the correction is measured on."""


class FrameMotion:
    """The image's frame-to-frame motion of the stored boxes, measured as pass 1 stores them.

    `add` is called with each stored box (on the tracking thread); the nose patch is cut there, and phase
    correlation and ECC run on one worker thread, so the work hides behind face tracking instead of adding
    to the bank's build time after it. At most `PENDING` patches wait for the worker.
    """

    PENDING = 64

    def __init__(self, threaded: bool = True) -> None:
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="stylelipsync-bank-motion") if threaded else None
        )
        self._steps: list[Future[NDArray[np.float64] | None] | NDArray[np.float64] | None] = []
        self._rect: tuple[int, int, int, int] | None = None
        self._checked = False
        self._window: NDArray[np.float64] | None = None
        self._limit = 0.0
        self._prev: tuple[int, NDArray[np.float64]] | None = None

    def add(self, frame: int, box: NDArray[np.uint8], box_landmarks: NDArray[np.floating]) -> None:
        """Stored box of source frame `frame`, with that frame's landmarks in box pixels."""
        if not self._checked:
            self._checked = True
            self._rect = _nose_rect(np.asarray(box_landmarks, dtype=np.float64), box.shape[:2])
            if self._rect is not None:
                x0, y0, x1, y1 = self._rect
                self._window = np.asarray(cv2.createHanningWindow((x1 - x0, y1 - y0), cv2.CV_64F), np.float64)
                self._limit = MAX_STEP * min(x1 - x0, y1 - y0)
        if self._rect is None:
            self._steps.append(None)
            return
        cur = _patch(box, self._rect)
        prev, self._prev = self._prev, (frame, cur)
        if prev is None or prev[0] != frame - 1:
            self._steps.append(None)
            return
        if self._pool is None:
            self._steps.append(self._step(prev[1], cur))
            return
        self._steps.append(self._pool.submit(self._step, prev[1], cur))
        pending = [f for f in self._steps[-self.PENDING - 1 : -1] if isinstance(f, Future)]
        if len(pending) >= self.PENDING:
            pending[0].result()

    def steps(self) -> list[NDArray[np.float64] | None]:
        """Per stored box, its motion from the previous one in box pixels (None: not measured)."""
        out = [f.result() if isinstance(f, Future) else f for f in self._steps]
        self._steps = list(out)  # the results, not the futures (each holds a lock and a condition)
        self.close()
        return out

    def close(self) -> None:
        """Stop the worker (waits for the queued patches)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _step(self, prev: NDArray[np.float64], cur: NDArray[np.float64]) -> NDArray[np.float64] | None:
        (dx, dy), response = cv2.phaseCorrelate(prev, cur, self._window)
        if response < MIN_RESPONSE or abs(dx) >= self._limit or abs(dy) >= self._limit:
            return None
        step = _refine(prev, cur, (dx, dy))
        return step if np.abs(step - (dx, dy)).max() < 1.0 else None


def steady_shifts(collector: CropCollector, landmarks: NDArray[np.floating]) -> NDArray[np.float64]:
    """(len(collector.frames), 2) pixel shifts that move each stored frame's landmarks to where the image puts
    the face (0 where a frame has no neighbour to correlate with).

    `landmarks` (len(collector.frames), 478, 2|3): each stored frame's own detection (`FaceTrack.observed`
    of the collector's frames), in frame pixels; the image's motion is the collector's `FrameMotion`.
    """
    n = len(collector.frames)
    out = np.zeros((n, 2))
    steps = collector.motion.steps()
    if n < 3 or collector.store is None:
        return out
    if len(landmarks) != n:
        raise ValueError(f"landmarks of {len(landmarks)} frames for {n} stored boxes")
    origins = -np.array([m[:, 2] for m in collector.matrices], dtype=np.float64)
    centre = np.asarray(landmarks[:, list(CENTRE_POINTS), :2], dtype=np.float64).mean(axis=1)
    motion = np.full((n, 2), np.nan)
    for r in range(1, n):
        step = steps[r]
        if step is not None:
            motion[r] = step + origins[r] - origins[r - 1]
    start = 0
    for r in range(1, n + 1):
        if r < n and np.isfinite(motion[r]).all():
            continue
        if r - start >= 3:
            path = np.concatenate([np.zeros((1, 2)), np.cumsum(motion[start + 1 : r], axis=0)])
            residual = centre[start:r] - path
            if np.isfinite(residual).all():
                slow = gaussian_filter1d(residual, DRIFT_SIGMA_FRAMES, axis=0, mode="nearest")
                out[start:r] = slow - residual
        start = r
    return out


def _refine(
    prev: NDArray[np.float64], cur: NDArray[np.float64], guess: tuple[float, float]
) -> NDArray[np.float64]:
    """The translation from `prev` to `cur` refined from phase correlation's `guess` by ECC (phase
    correlation's sub-pixel peak is biased by a few tenths of a pixel; ECC started near the answer is not:
    0.03 px on a real nose moved by known amounts). The guess where ECC does not converge."""
    warp = np.array([[1.0, 0.0, guess[0]], [0.0, 1.0, guess[1]]], dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    # OpenCV's stubs lack the overload with gaussFiltSize; 1 (no pre-blur) keeps the sub-pixel detail.
    ecc: Any = cv2.findTransformECC
    try:
        _, warp = ecc(
            prev.astype(np.float32), cur.astype(np.float32), warp, cv2.MOTION_TRANSLATION, criteria, None, 1
        )
    except cv2.error:
        return np.asarray(guess, dtype=np.float64)
    return np.asarray(warp[:, 2], dtype=np.float64)


def _nose_rect(box_lm: NDArray[np.float64], shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the box's nose and the cheeks beside it, above the upper lip."""
    left, right = box_lm[NOSE_WINGS[0], 0], box_lm[NOSE_WINGS[1], 0]
    width = abs(right - left)
    if not np.isfinite(width) or width < 4:
        return None
    h, w = int(shape[0]), int(shape[1])
    x0 = int(max(0, np.floor(min(left, right) - 0.5 * width)))
    x1 = int(min(w, np.ceil(max(left, right) + 0.5 * width)))
    y1 = int(min(h, np.floor(box_lm[SUBNASALE, 1] - 0.05 * width)))
    y0 = max(0, y1 - round(width))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return x0, y0, x1, y1


def _patch(box: NDArray[np.uint8], rect: tuple[int, int, int, int]) -> NDArray[np.float64]:
    x0, y0, x1, y1 = rect
    grey = cv2.cvtColor(np.ascontiguousarray(box[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return np.asarray(grey, dtype=np.float64)
