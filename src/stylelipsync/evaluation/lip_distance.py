"""LMD: mean distance of the 40 MediaPipe lip landmarks between generated and reference frames.

Each video's lips are expressed in its own face frame: origin at the midpoint of the outer eye corners, x
along the eye line, unit = outer eye-corner distance (the normaliser of `mouth_opening`). A head that
sits a few pixels elsewhere, or a video at another resolution, does not count as a lip error; a mouth
that opens differently does. Unsmoothed (`raw`) landmarks are used, so fast lip motion is kept.
"""

from __future__ import annotations

import numpy as np

from stylelipsync.evaluation.mouth_opening import EYE_OUTER_CORNERS
from stylelipsync.face.landmarks import LIPS_INNER, LIPS_OUTER

LIP_POINTS = LIPS_OUTER + LIPS_INNER


def normalised_lips(landmarks: np.ndarray) -> np.ndarray:
    """(T, 40, 2) lip landmarks in the eye frame (NaN where the landmarks are NaN)."""
    pts = np.asarray(landmarks, dtype=np.float64)[..., :2]
    right, left = pts[:, EYE_OUTER_CORNERS[0]], pts[:, EYE_OUTER_CORNERS[1]]
    origin = (right + left) / 2
    axis = left - right
    scale = np.linalg.norm(axis, axis=-1, keepdims=True)
    ex = axis / np.maximum(scale, 1e-9)
    ey = np.stack([-ex[:, 1], ex[:, 0]], axis=-1)
    rel = (pts[:, list(LIP_POINTS)] - origin[:, None]) / np.maximum(scale, 1e-9)[:, None]
    return np.stack([(rel * ex[:, None]).sum(-1), (rel * ey[:, None]).sum(-1)], axis=-1)


def lmd_per_frame(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) mean lip-landmark distance per frame in eye-distance units (NaN where either face is missing)."""
    n = min(len(generated), len(reference))
    diff = normalised_lips(generated[:n]) - normalised_lips(reference[:n])
    return np.linalg.norm(diff, axis=-1).mean(axis=-1)


def lmd(generated: np.ndarray, reference: np.ndarray) -> float:
    """LMD over the frames where both videos have a face; NaN if there are none."""
    per_frame = lmd_per_frame(generated, reference)
    return float(np.nanmean(per_frame)) if np.isfinite(per_frame).any() else float("nan")
