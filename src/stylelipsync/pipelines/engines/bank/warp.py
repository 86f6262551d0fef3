"""Geometry of putting a bank mouth into a target crop: global alignment, local fit, mouth reshaping.

All three are folded into one sampling map, so the bank's pixels are resampled once:

1. *Global*: a similarity from the bank entry's stable points (eye corners, nose bridge to base, nose wings)
   to the target's, weighted towards the nose base, which sits right above the mouth.
2. *Local*: the residuals of those points and of the upper cheek contour are spread by a thin-plate spline,
   so cheeks and nose meet the target's where the mask's edge runs; the mouth and chin keep the bank's
   shape (they are not control points).
3. *Reshape* (when the bank lacks the wanted opening, e.g. a photo): the lower lip, chin and jaw are moved
   down (or up) by the missing opening with a second thin-plate spline that holds the upper lip, nose and a
   ring below the chin still, and the mouth's interior that opens up is painted (`paint_interior`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.crop import warp_points
from stylelipsync.face.landmarks import LIPS_INNER, LIPS_OUTER
from stylelipsync.face.track import FaceTrack, smooth

F64 = NDArray[np.float64]

STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 64, 294)
"""Eye corners, nose bridge to base and nose wings: they do not move when the mouth does."""
STABLE_WEIGHTS = np.array([1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 2], dtype=np.float64)
CHEEKS = (234, 454, 93, 323, 132, 361, 50, 280, 205, 425)
"""Cheek contour and cheek surface near the mask's upper edge: matched locally, not in the similarity."""
LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324)
UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415)
CORNERS = (61, 291, 78, 308)
JAW = (172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)
JAW_FOLLOW = (0.3, 0.5, 0.7, 0.85, 0.95, 1.0, 1.0, 1.0, 0.95, 0.85, 0.7, 0.5, 0.3)
"""How much of the lower lip's move each jaw point follows (the chin fully, the angles of the jaw less)."""
HOLD = (2, 98, 327, 206, 426, 234, 454, 93, 323)
INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CENTRE = (*LIPS_OUTER[10:], LIPS_OUTER[0])
"""Upper outer lip from corner to corner: the mouth's place as a viewer (and `evaluation.jitter`) reads it; it
moves with the pasted mouth, much less with the jaw."""
GRID = 17
"""Thin-plate splines are evaluated on a GRID × GRID lattice and interpolated (they are smooth)."""


TARGET_STEADY_FRAMES = 0.7
"""σ (frames) of the zero-phase smoothing of the target frame's fitted points (`STABLE`, `CHEEKS`) over time:
it takes out part of the detection's frame-to-frame noise and barely any of the head's own motion (a
Gaussian of 0.7 frames keeps 94 % of a 2 Hz nod at 25 frames/s; the smoothed track's 2 frames lagged it)."""


class TargetLandmarks:
    """Each frame's landmarks to place a mouth on, one frame at a time: the frame's own detection
    (`FaceTrack.observed`) with the points the placement fits (`STABLE`, `CHEEKS`) smoothed by
    `TARGET_STEADY_FRAMES` (offline only: it looks one or two frames ahead). Made on demand from the track
    rather than held as a second (T, 478, 3) array (5.7 kB a frame)."""

    def __init__(self, track: FaceTrack) -> None:
        self.track = track
        self._fitted = list(STABLE) + list(CHEEKS)
        fitted = np.where(
            track.detected[:, None, None], track.raw[:, self._fitted], track.landmarks[:, self._fitted]
        )
        self._smoothed = smooth(np.ascontiguousarray(fitted), track.valid, TARGET_STEADY_FRAMES)

    def __len__(self) -> int:
        return len(self.track)

    def __getitem__(self, s: int) -> NDArray[np.float32]:
        """(478, 3) float32 landmarks of frame s."""
        track = self.track
        row = np.array(track.raw[s] if track.detected[s] else track.landmarks[s], dtype=np.float32)
        row[self._fitted] = self._smoothed[s]
        return row


def similarity(src: F64, dst: F64, weights: F64) -> F64:
    """Weighted least-squares 2×3 similarity mapping (N, 2) `src` onto `dst`."""
    w = weights / weights.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    var = float(w @ (a**2).sum(axis=1))
    sxx = float(w @ (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]))
    sxy = float(w @ (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))
    c, s = sxx / max(var, 1e-12), sxy / max(var, 1e-12)
    rot = np.array([[c, -s], [s, c]])
    return np.concatenate([rot, (md - rot @ ms)[:, None]], axis=1)


def _tps_kernel(r2: F64) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, 0.5 * r2 * np.log(r2), 0.0)


def thin_plate(points: F64, values: F64, size: int, smoothing: float = 1.0) -> F64:
    """(GRID, GRID, 2) lattice over a `size`² crop of the thin-plate spline through (N, 2) `values` at
    (N, 2) `points` (lattice node (i, j) sits at crop pixel (j, i)·(size − 1)/(GRID − 1))."""
    n = len(points)
    scale = size / 2.0
    p = points / scale
    k = _tps_kernel(((p[:, None] - p[None]) ** 2).sum(-1)) + smoothing * 1e-3 * np.eye(n)
    poly = np.concatenate([np.ones((n, 1)), p], axis=1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n], system[:n, n:], system[n:, :n] = k, poly, poly.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = values
    try:
        coef = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        coef = np.linalg.lstsq(system, rhs, rcond=None)[0]
    axis = np.linspace(0, size - 1, GRID)
    gx, gy = np.meshgrid(axis, axis)
    g = np.stack([gx.ravel(), gy.ravel()], axis=1) / scale
    kg = _tps_kernel(((g[:, None] - p[None]) ** 2).sum(-1))
    field = kg @ coef[:n] + np.concatenate([np.ones((len(g), 1)), g], axis=1) @ coef[n:]
    return field.reshape(GRID, GRID, 2)


@dataclass
class Placement:
    """Where a bank entry lands in the target crop: bank crop → target crop is q = A·p + field(q).

    `matrix` (2×3) is the similarity A, `field` (GRID, GRID, 2) the lattice of the local fit plus reshaping in
    target-crop pixels (see `thin_plate`),
    `landmarks` (478, 2) the entry's landmarks as they appear in the target crop (after reshaping), `centre`
    (2,) where its mouth centre (`MOUTH_CENTRE`) lands, the local fit included.
    """

    matrix: F64
    field: NDArray[np.float32]
    landmarks: F64
    centre: F64


def place(
    bank_lm: F64, target_lm: F64, size: int, open_px: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)
) -> Placement:
    """How a bank entry with landmarks `bank_lm` goes into a `size`² target crop with `target_lm`.

    Both (478, 2) in their own crops (which may differ in size: the similarity takes care of it); `open_px`
    opens (or, negative, closes) the mouth by that many target pixels; `shift` (x, y target pixels) moves the
    whole entry after the fit (the renderer's easing of the mouth's place across a cut).
    """
    stable = list(STABLE)
    a = similarity(bank_lm[stable], target_lm[stable], STABLE_WEIGHTS)
    placed = warp_points(bank_lm, a)
    local = list(STABLE) + list(CHEEKS)
    residual = target_lm[local] - placed[local]
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    pts = np.concatenate([target_lm[local], corners])
    vals = np.concatenate([residual, np.zeros((4, 2))])
    field = thin_plate(pts, vals, size, smoothing=5.0)
    centre = placed[list(MOUTH_CENTRE)].mean(axis=0)
    centre = centre + _bilinear(field, centre, size)
    moved = placed.copy()
    if abs(open_px) > 0.25:
        reshape, moved = _reshape(placed, size, open_px)
        field = field + reshape
        centre = centre + (moved - placed)[list(MOUTH_CENTRE)].mean(axis=0)
    if shift[0] != 0.0 or shift[1] != 0.0:
        field = field + np.asarray(shift, dtype=np.float64)
        moved = moved + np.asarray(shift, dtype=np.float64)
        centre = centre + np.asarray(shift, dtype=np.float64)
    return Placement(a, field.astype(np.float32), moved, centre)


def _bilinear(field: F64, point: F64, size: int) -> F64:
    """(2,) lattice `field` (see `thin_plate`) interpolated at a (2,) crop point."""
    step = (GRID - 1) / max(size - 1, 1)
    gx, gy = np.clip(point * step, 0, GRID - 1)
    x0, y0 = int(min(gx, GRID - 2)), int(min(gy, GRID - 2))
    fx, fy = gx - x0, gy - y0
    value = (
        field[y0, x0] * (1 - fx) * (1 - fy)
        + field[y0, x0 + 1] * fx * (1 - fy)
        + field[y0 + 1, x0] * (1 - fx) * fy
        + field[y0 + 1, x0 + 1] * fx * fy
    )
    return np.asarray(value, dtype=np.float64)


def sampling_maps(
    placement: Placement, frame_to_crop: F64, box: tuple[int, int, int, int], size: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """`cv2.remap` maps that fill the frame region `box` (x0, y0, x1, y1) from a bank entry's stored box.

    Frame pixel p → target crop q = M·p → bank box A⁻¹(q − field(q)): the bank's pixels are resampled once,
    straight into the frame.
    """
    x0, y0, x1, y1 = box
    xs = np.arange(x0, x1, dtype=np.float32)
    ys = np.arange(y0, y1, dtype=np.float32)
    m = frame_to_crop.astype(np.float32)
    qx = m[0, 0] * xs[None, :] + m[0, 1] * ys[:, None] + m[0, 2]
    qy = m[1, 0] * xs[None, :] + m[1, 1] * ys[:, None] + m[1, 2]
    step = np.float32((GRID - 1) / max(size - 1, 1))
    field = cv2.remap(
        placement.field, qx * step, qy * step, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    qx = qx - field[..., 0]
    qy = qy - field[..., 1]
    inv = np.linalg.inv(np.vstack([placement.matrix, [0, 0, 1]]))[:2].astype(np.float32)
    map_x = inv[0, 0] * qx + inv[0, 1] * qy + inv[0, 2]
    map_y = inv[1, 0] * qx + inv[1, 1] * qy + inv[1, 2]
    return map_x.astype(np.float32), map_y.astype(np.float32)


def _reshape(lm: F64, size: int, open_px: float) -> tuple[F64, F64]:
    """Displacement field (target space) that opens the mouth by `open_px`, and the moved landmarks."""
    down = np.array([0.0, 1.0])
    ctrl: list[int] = []
    vals: list[F64] = []
    for i in LOWER_LIP:
        ctrl.append(i)
        vals.append(down * open_px)
    for i in UPPER_LIP:
        ctrl.append(i)
        vals.append(down * 0.0)
    for i in CORNERS:
        ctrl.append(i)
        vals.append(down * 0.35 * open_px)
    for i, f in zip(JAW, JAW_FOLLOW, strict=True):
        ctrl.append(i)
        vals.append(down * f * open_px)
    for i in HOLD:
        ctrl.append(i)
        vals.append(down * 0.0)
    # The field is sampled at output pixels (backward mapping), so it is fitted where the points end up.
    pts = lm[ctrl] + np.asarray(vals)
    chin = lm[152]
    mouth_w = float(np.linalg.norm(lm[61] - lm[291]))
    ring = [chin + np.array([dx, 0.9 * mouth_w]) for dx in (-1.2 * mouth_w, 0.0, 1.2 * mouth_w)]
    ring += [lm[132] + np.array([-0.3 * mouth_w, 0.0]), lm[361] + np.array([0.3 * mouth_w, 0.0])]
    pts = np.concatenate([pts, np.asarray(ring)])
    vals_arr = np.concatenate([np.asarray(vals), np.zeros((len(ring), 2))])
    field = thin_plate(pts, vals_arr, size, smoothing=1.0)
    moved = lm.copy()
    moved[ctrl] = lm[ctrl] + np.asarray(vals)
    for i in set(LIPS_OUTER) | set(LIPS_INNER):
        if i not in ctrl:
            moved[i] = lm[i] + _sample(field, lm[i], size)
    return field, moved


def _sample(field: F64, point: F64, size: int) -> F64:
    """Lattice value nearest to a (2,) crop point."""
    step = (GRID - 1) / max(size - 1, 1)
    x = int(np.clip(round(point[0] * step), 0, GRID - 1))
    y = int(np.clip(round(point[1] * step), 0, GRID - 1))
    return np.asarray(field[y, x])


def paint_interior(image: NDArray[np.uint8], lm: F64, amount: float, teeth: bool = True) -> NDArray[np.uint8]:
    """Paint the mouth's interior inside the inner-lip contour of `lm` (target crop), blended by `amount`.

    Used where reshaping opened a mouth that was closed in the bank: a dark cavity in the lips' own hue,
    darker towards the middle, with the upper teeth as a soft light band under the upper lip when the gap is
    wide enough. The lips themselves stay the bank's real pixels.
    """
    amount = float(np.clip(amount, 0.0, 1.0))
    if amount <= 0:
        return image
    upper = _smooth_curve(lm[list(INNER_UPPER)])
    lower = _smooth_curve(lm[list(INNER_LOWER)])[::-1]
    poly = np.concatenate([upper, lower[1:-1]])
    gap = float(np.linalg.norm(lm[13] - lm[14]))
    if gap < 1.0:
        return image
    h, w = image.shape[:2]
    x0, y0 = np.floor(poly.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 4
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return image
    roi = image[y0:y1, x0:x1].astype(np.float32)
    scale = 4
    mask = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), np.uint8)
    pts = np.round((poly - [x0, y0]) * scale).astype(np.int32)
    cv2.fillPoly(mask, [pts], (255,), lineType=cv2.LINE_AA)
    alpha = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), 0.6), dtype=np.float32)
    inside = alpha > 0.05
    ring = (cv2.dilate((alpha > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~inside
    lips = roi[ring] if ring.any() else roi.reshape(-1, 3)
    lip_colour = np.median(lips, axis=0)
    yy = np.arange(y1 - y0, dtype=np.float32)[:, None]
    xs = np.arange(x0, x1, dtype=np.float64)
    top_y = np.interp(xs, upper[:, 0], upper[:, 1]) - y0
    depth = np.clip((yy - top_y[None, :]) / max(gap, 1.0), 0.0, 1.0)
    cavity = lip_colour[None, None, :] * (0.28 - 0.14 * np.sin(np.pi * depth)[..., None])
    if teeth and gap > 4.0:
        # Upper teeth: a soft band under the upper lip, fading towards the mouth corners.
        left, right = float(lm[78, 0]), float(lm[308, 0])
        across = np.clip(1.0 - np.abs((xs - (left + right) / 2) / max((right - left) / 2, 1.0)) ** 2, 0, 1)
        band = np.clip(1.0 - (yy - top_y[None, :]) / (0.28 * gap), 0.0, 1.0) ** 0.8 * across[None, :] * 0.85
        tooth = np.clip(float(lip_colour.mean()) * 1.5, 140, 210) * np.array([1.0, 0.96, 0.9], np.float32)
        cavity = cavity * (1 - band[..., None]) + tooth[None, None, :] * band[..., None]
    cavity = cv2.GaussianBlur(cavity.astype(np.float32), (0, 0), 0.8)
    a = (alpha * amount)[..., None]
    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(roi * (1 - a) + cavity * a), 0, 255).astype(np.uint8)
    return out


NOSE_BASE = (129, 98, 2, 327, 358)
"""Nose wings and subnasale: the blend region's top runs just below them, so nostrils stay the target's."""
CHEEK_SIDES = (
    234,
    93,
    132,
    58,
    172,
    136,
    150,
    149,
    176,
    148,
    152,
    377,
    400,
    378,
    379,
    365,
    397,
    288,
    361,
    323,
    454,
)
"""Lower face contour from cheek to cheek over the chin."""
JAW_BOTTOM = (150, 149, 176, 148, 152, 377, 400, 378, 379)


def face_region(target_lm: F64, placed_lm: F64, size: int, feather: float = 0.015) -> NDArray[np.float32]:
    """(size, size) float32 in [0, 1]: the target's lower face, its chin line lowered to the placed bank
    chin where that is lower.

    Outside it (hair, background, collar beside the jaw) and above the nose base, the target's own pixels are
    kept whatever the pose-aware mask allows: those are the places a mouth from another frame does not match.
    The chin counts twice, so a chin that drops with an opening mouth, or rises with a closing one, is
    covered.
    """
    mask = np.zeros((size, size), np.uint8)
    contour = target_lm[list(CHEEK_SIDES)].copy()
    lower = np.isin(np.asarray(CHEEK_SIDES), JAW_BOTTOM)
    contour[lower, 1] = np.maximum(contour[lower, 1], placed_lm[list(CHEEK_SIDES)][lower, 1])
    top = target_lm[list(NOSE_BASE)].copy()
    top[:, 1] += 0.25 * max(float(target_lm[0][1] - target_lm[2][1]), 0.0)
    poly = np.concatenate([contour, top[::-1]])
    cv2.fillPoly(mask, [np.round(poly * 4).astype(np.int32)], (255,), lineType=cv2.LINE_AA, shift=2)
    radius = max(1, round(feather * size))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    eroded = np.asarray(cv2.erode(mask, disc), dtype=np.float32)
    soft = cv2.GaussianBlur(eroded / 255.0, (0, 0), float(radius))
    return np.asarray(soft, dtype=np.float32)


def _smooth_curve(points: F64, samples: int = 48) -> F64:
    """A lip contour (N, 2) resampled along a Catmull-Rom spline: inner-lip landmarks are few, and a straight
    polygon through them paints an angular mouth."""
    p = np.concatenate([points[:1], points, points[-1:]])
    out = []
    for i in range(1, len(p) - 2):
        t = np.linspace(0.0, 1.0, max(2, samples // (len(points) - 1)), endpoint=False)[:, None]
        a, b, c, d = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * ((2 * b) + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (-a + 3 * b - 3 * c + d) * t**3)
        )
    out.append(points[-1:])
    return np.concatenate(out)
