"""Mouth opening measured from MediaPipe FaceMesh landmarks (478 points), scale-free.

Used by the offline sync score, the silence-leak test and the mouth-landmark distance. The inner-lip gap
(landmarks 13/14) is divided by the outer eye-corner distance (33/263) so the figure does not depend on the
face size in the frame; eye corners are rigid, so speech does not move the normaliser.
"""

from __future__ import annotations

import numpy as np

UPPER_INNER_LIP = 13
LOWER_INNER_LIP = 14
MOUTH_CORNERS = (78, 308)
EYE_OUTER_CORNERS = (33, 263)


def mouth_opening(landmarks: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Inner-lip gap over inter-ocular distance per frame; NaN where `valid` is False.

    landmarks: (T, 478, 2 or 3) pixel coordinates. Returns (T,) float64.
    """
    pts = np.asarray(landmarks, dtype=np.float64)[..., :2]
    if pts.ndim != 3 or pts.shape[1] < 468:
        raise ValueError(f"expected landmarks of shape (T, 478, 2|3), got {pts.shape}")
    gap = np.linalg.norm(pts[:, UPPER_INNER_LIP] - pts[:, LOWER_INNER_LIP], axis=-1)
    eyes = np.linalg.norm(pts[:, EYE_OUTER_CORNERS[0]] - pts[:, EYE_OUTER_CORNERS[1]], axis=-1)
    out = gap / np.maximum(eyes, 1e-6)
    if valid is not None:
        out = np.where(np.asarray(valid, dtype=bool), out, np.nan)
    return out
