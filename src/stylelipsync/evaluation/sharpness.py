"""Mouth sharpness: variance of the Laplacian of the grey-level mouth region, per frame and per video.

A dubbing model trained with L1 alone renders a blurred mouth (no lip edges, no teeth) that the sync scores do
not see; this number does (docs/small_data_findings.md measured it). Each frame's mouth region is warped by a
similarity to a fixed 96 × 64 crop: centred on the outer-lip landmarks, rotated upright by the eye line,
scaled by the outer eye-corner distance, so the crop covers the same part of the face whatever its size,
position or roll in the frame. The Laplacian variance of that crop (grey levels 0–255) grows with edge
contrast. Blur, and also upsampling a small face, lower it, so values are only comparable between videos of
the same source clip at the same resolution: report the ratio dubbed / real.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from stylelipsync.evaluation.mouth_opening import EYE_OUTER_CORNERS
from stylelipsync.face.landmarks import LIPS_OUTER

Matrix = NDArray[np.float64]

CROP_SIZE = (96, 64)  # (width, height) of the mouth crop in pixels
# Crop width in outer eye-corner distances: the mouth is about 0.55 of it wide, so this leaves ~0.2 on each
# side; the height (2/3 of the width) covers a wide-open mouth with lips and some chin and philtrum.
CROP_WIDTH_EYES = 0.95


def mouth_transform(
    landmarks: NDArray[np.floating], size: tuple[int, int] = CROP_SIZE, width_eyes: float = CROP_WIDTH_EYES
) -> Matrix:
    """Frame → mouth-crop 2×3 similarity for one frame's (478, 2|3) pixel landmarks (NaN if they are).

    Centre: mean of the outer-lip points; rotation: the outer eye corners' line made horizontal; scale:
    `width_eyes` outer eye-corner distances span the crop's width. Eye corners do not move with speech, so the
    scale does not breathe with the mouth.
    """
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    right, left = lm[EYE_OUTER_CORNERS[0]], lm[EYE_OUTER_CORNERS[1]]
    across = left - right
    d = float(np.hypot(across[0], across[1]))
    centre = lm[list(LIPS_OUTER)].mean(axis=0)
    width, height = size
    angle = float(np.arctan2(across[1], across[0]))
    scale = width / (width_eyes * max(d, 1e-6))
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]]) * scale
    t = np.array([width / 2, height / 2]) - rot @ centre
    return np.concatenate([rot, t[:, None]], axis=1)


def _warp_grey(image: NDArray[np.uint8], matrix: Matrix, size: tuple[int, int]) -> NDArray[np.float32]:
    """Grey-level (0–255 float32) bilinear warp of only the part of the frame the crop reads."""
    width, height = size
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    pts = corners @ inverse.T
    h, w = image.shape[:2]
    x0 = int(np.clip(np.floor(pts[:, 0].min()) - 2, 0, w - 1))
    y0 = int(np.clip(np.floor(pts[:, 1].min()) - 2, 0, h - 1))
    x1 = int(np.clip(np.ceil(pts[:, 0].max()) + 3, x0 + 1, w))
    y1 = int(np.clip(np.ceil(pts[:, 1].max()) + 3, y0 + 1, h))
    roi = image[y0:y1, x0:x1]
    grey = cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY) if roi.ndim == 3 else roi
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    crop = cv2.warpAffine(
        grey.astype(np.float32),
        shifted,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(crop, dtype=np.float32)


def mouth_crop(
    image: NDArray[np.uint8],
    landmarks: NDArray[np.floating],
    size: tuple[int, int] = CROP_SIZE,
    width_eyes: float = CROP_WIDTH_EYES,
) -> NDArray[np.float32]:
    """Grey-level (0–255) mouth crop of an RGB (or grey) uint8 frame, `size` = (width, height).

    A mouth larger than the crop is warped at its own resolution first and then reduced with area averaging
    (a bilinear warp straight down would alias, which reads as extra sharpness); a smaller one is
    upsampled bilinearly. Outside the frame the border pixels are repeated, so the frame edge adds no edge.
    """
    matrix = mouth_transform(landmarks, size, width_eyes)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 1.0:
        return _warp_grey(image, matrix, size)
    native = (max(round(size[0] / scale), size[0]), max(round(size[1] / scale), size[1]))
    crop = _warp_grey(image, mouth_transform(landmarks, native, width_eyes), native)
    return np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.float32)


def laplacian_variance(grey: NDArray[np.floating] | NDArray[np.uint8]) -> float:
    """Variance of the 3 × 3 Laplacian of a grey image: high for crisp edges and texture, low for blur."""
    return float(cv2.Laplacian(np.asarray(grey, dtype=np.float64), cv2.CV_64F).var())


def frame_sharpness(
    image: NDArray[np.uint8], landmarks: NDArray[np.floating], size: tuple[int, int] = CROP_SIZE
) -> float:
    """Laplacian variance of one frame's mouth crop."""
    return laplacian_variance(mouth_crop(image, landmarks, size))


@dataclass
class SharpnessResult:
    """Per-video mouth sharpness: the median over the frames used, and how many frames that was.

    `per_frame` is (T,) with NaN for frames skipped (not on the frame step, or no valid face); `considered`
    counts the frames on the step, `used` those of them with a face.
    """

    value: float
    per_frame: NDArray[np.float64]
    used: int
    considered: int


def video_sharpness(
    frames: Iterable[tuple[int, NDArray[np.uint8]]],
    landmarks: NDArray[np.floating],
    valid: NDArray[np.bool_],
    frame_step: int = 1,
    size: tuple[int, int] = CROP_SIZE,
) -> SharpnessResult:
    """Median mouth sharpness over the `frame_step`-th frames that have a valid face.

    frames: (index, RGB uint8 image) pairs, e.g. from a `VideoReader`; landmarks: (T, 478, 2|3) pixel
    coordinates (the track's raw detections; frames with NaN points are skipped like invalid ones); valid:
    (T,) bool. The median, not the mean, so a few frames of motion blur or a mis-tracked frame do not move it.
    NaN value if no frame was usable.
    """
    lm = np.asarray(landmarks)
    ok = np.asarray(valid, dtype=bool)
    n = min(len(lm), len(ok))
    per_frame = np.full(n, np.nan)
    used = considered = 0
    for t, image in frames:
        if t % frame_step:
            continue
        considered += 1
        if t >= n or not ok[t] or not np.isfinite(lm[t, :, :2]).all():
            continue
        per_frame[t] = frame_sharpness(image, lm[t], size)
        used += 1
    value = float(np.nanmedian(per_frame)) if used else float("nan")
    return SharpnessResult(value=value, per_frame=per_frame, used=used, considered=considered)
