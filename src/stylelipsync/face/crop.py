"""Square face crops: per-frame 2×3 similarity matrices (frame → crop) and the warps that use them.

The crop is aligned on the eyes and the nose only: position from the eye centres, roll from the eye line,
scale from the 3-D distance between the eye centres (FaceMesh z is on the x scale, so this distance does not
shrink when the head turns). No mouth or jaw point is used, so the crop never moves with the mouth and cannot
leak the original speech to the generator.

Framing is FOMM/VoxCeleb-like: the whole head, eye line a little above the middle, chin near the bottom.
Roll is removed by the similarity (faces come out upright) rather than kept: the generator's StyleGAN2 prior
and the pose-aware mask both expect upright faces, and the landmarks the rotation comes from are already
smoothed over time, so an upright crop does not wobble.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.landmarks import LEFT_EYE, NOSE_BRIDGE, PRONASALE, RIGHT_EYE
from stylelipsync.face.track import FaceTrack

Matrix = NDArray[np.float64]


@dataclass(frozen=True)
class Framing:
    """Crop geometry in units of the eye-centre distance d.

    side: crop side = side·d. eye_line: height of the eye line from the top, as a fraction of the side.
    nose_weight: how much the nose (bridge to tip) pulls the horizontal centre away from the eye midpoint;
    under yaw it keeps the head, not just the eyes, in the middle.
    """

    side: float = 4.3
    eye_line: float = 0.42
    nose_weight: float = 0.3


DEFAULT_FRAMING = Framing()


def crop_transform(
    landmarks: NDArray[np.floating], size: int = 256, framing: Framing = DEFAULT_FRAMING
) -> Matrix:
    """Frame → crop 2×3 similarity for one frame's (478, 3) landmarks (NaN matrix if they are NaN)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    right = lm[list(RIGHT_EYE)].mean(axis=0)
    left = lm[list(LEFT_EYE)].mean(axis=0)
    eye_mid = (right + left) / 2
    d = float(np.linalg.norm(left - right))
    across = (left - right)[:2]
    angle = float(np.arctan2(across[1], across[0]))
    c, s = np.cos(angle), np.sin(angle)
    down = np.array([-s, c])
    along = np.array([c, s])
    nose = (lm[NOSE_BRIDGE] + lm[PRONASALE])[:2] / 2
    shift = framing.nose_weight * float(np.dot(nose - eye_mid[:2], along))
    side_px = framing.side * d
    centre = eye_mid[:2] + along * shift + down * (0.5 - framing.eye_line) * side_px
    scale = size / side_px
    rot = np.array([[c, s], [-s, c]]) * scale
    t = size / 2 - rot @ centre
    return np.concatenate([rot, t[:, None]], axis=1)


def crop_transforms(track: FaceTrack, size: int = 256, framing: Framing = DEFAULT_FRAMING) -> Matrix:
    """(T, 2, 3) frame → crop similarities from the track's smoothed landmarks; NaN for invalid frames."""
    out = np.full((len(track), 2, 3), np.nan)
    for t in np.flatnonzero(track.valid):
        out[t] = crop_transform(track.landmarks[t], size, framing)
    return out


def similarity_scale(m: Matrix) -> float:
    """Uniform scale factor of a 2×3 similarity."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def invert(m: Matrix) -> Matrix:
    """Inverse of a 2×3 affine transform (crop → frame for a frame → crop matrix)."""
    (a, b, tx), (c, d, ty) = np.asarray(m, dtype=np.float64)
    det = a * d - b * c
    inv = np.array([[d, -b], [-c, a]]) / det
    return np.concatenate([inv, (-inv @ np.array([tx, ty]))[:, None]], axis=1)


def to_region(m: Matrix, x0: float, y0: float) -> Matrix:
    """Crop → frame-region matrix for a frame → crop matrix `m` and a region whose top-left corner is frame
    pixel (x0, y0)."""
    out = invert(m)
    out[:, 2] -= (x0, y0)
    return out


def warp_points(points: NDArray[np.floating], m: Matrix) -> NDArray[np.float64]:
    """Apply a 2×3 transform to (N, 2) points."""
    p = np.asarray(points, dtype=np.float64)[:, :2]
    return p @ m[:, :2].T + m[:, 2]


def warp_landmarks(landmarks: NDArray[np.floating], m: Matrix) -> NDArray[np.float32]:
    """(N, 3) landmarks through a similarity: x, y transformed, z scaled by the same factor."""
    out = np.empty((landmarks.shape[0], 3), dtype=np.float32)
    out[:, :2] = warp_points(landmarks, m)
    out[:, 2] = np.asarray(landmarks[:, 2], dtype=np.float64) * similarity_scale(m)
    return out


def warp_image(
    image: NDArray[np.uint8],
    m: Matrix,
    out_size: tuple[int, int],
    interpolation: int = cv2.INTER_CUBIC,
    border: int = cv2.BORDER_REFLECT_101,
) -> NDArray[np.uint8]:
    """Warp `image` by the 2×3 `m` into an image of `out_size` (w, h).

    When `m` shrinks by more than 1.5×, the image is first reduced with area averaging (no aliasing of hair,
    teeth or fabric) and only the remaining rotation and small scale go through `interpolation`.
    """
    scale = similarity_scale(m)
    if scale < 1 / 1.5:
        inv = invert(m)
        w, h = out_size
        corners = warp_points(np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64), inv)
        pad = 2 / scale
        x0 = max(int(np.floor(corners[:, 0].min() - pad)), 0)
        y0 = max(int(np.floor(corners[:, 1].min() - pad)), 0)
        x1 = min(int(np.ceil(corners[:, 0].max() + pad)), image.shape[1])
        y1 = min(int(np.ceil(corners[:, 1].max() + pad)), image.shape[0])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            reduce = 1.25 * scale
            size = (max(2, round((x1 - x0) * reduce)), max(2, round((y1 - y0) * reduce)))
            small = cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
            sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
            # small = diag(sx, sy) · (frame − (x0, y0))  →  frame = small / (sx, sy) + (x0, y0)
            to_frame = np.array([[1 / sx, 0, x0], [0, 1 / sy, y0]], dtype=np.float64)
            m = _compose(m, to_frame)
            image = np.asarray(small, dtype=np.uint8)
    return np.asarray(
        cv2.warpAffine(image, m, out_size, flags=interpolation, borderMode=border), dtype=np.uint8
    )


def _compose(outer: Matrix, inner: Matrix) -> Matrix:
    """outer ∘ inner for 2×3 affine matrices."""
    a = outer[:, :2] @ inner[:, :2]
    b = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return np.concatenate([a, b[:, None]], axis=1)


def warp_to_crop(frame: NDArray[np.uint8], m: Matrix, size: int = 256) -> NDArray[np.uint8]:
    """The size×size crop of `frame` given by the frame → crop matrix `m` (mirrored outside the frame)."""
    return warp_image(frame, m, (size, size))
