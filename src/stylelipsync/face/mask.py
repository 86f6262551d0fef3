"""Pose-aware lower-face mask (spec §3.5) and the exact keep-mask post-processing of §3.3.

The mask is a fixed 3-D "bowl" outline in model space (see `geometry.FaceModel`), projected into each 256²
crop with the pose fitted on rigid points (eye corners, nose bridge, forehead, temples). Outline:

* top edge across the face at the nose base, `cut` of the way from the subnasale (#2) up to the pronasale (#4)
  (about 1.8 cm below the pronasale on an average face, in the spec's −1.5…−2.1 cm band), rising as a
  power curve into two horns that meet the face silhouette `horn_rise_cm` higher, toward the cheeks;
* sides and bottom: the lower face oval pushed out by `jaw_margin_cm`, with the chin pulled down by
  `chin_drop_cm` (fading out toward the cut height) so that a wide-open jaw stays inside.

The current frame's mouth, lip and jaw landmarks never enter: the shape is fixed for the clip and the pose
comes from rigid points, so the mask outline cannot tell the generator whether the mouth is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.spatial import Delaunay

from stylelipsync.face.geometry import F64, FaceModel, Pose
from stylelipsync.face.landmarks import CHIN, FACE_OVAL, PRONASALE, SUBNASALE

Mask = NDArray[np.uint8]


@dataclass(frozen=True)
class MaskParams:
    """Template shape, in model-space centimetres (see the module docstring)."""

    cut: float = 0.2
    horn_rise_cm: float = 2.2
    horn_power: float = 2.5
    chin_drop_cm: float = 1.75
    jaw_margin_cm: float = 0.3
    top_samples: int = 31


def _crossing(poly: F64, y: float) -> tuple[int, F64] | None:
    """First segment of an open polyline (N, 3) that crosses height y going down; (segment index, point)."""
    for i in range(len(poly) - 1):
        a, b = poly[i], poly[i + 1]
        if a[1] >= y > b[1]:
            w = (a[1] - y) / (a[1] - b[1])
            return i, a + w * (b - a)
    return None


def template_outline(model: FaceModel, params: MaskParams = MaskParams()) -> F64:
    """Closed (K, 3) model-space outline of the regenerated region (top curve left→right, then the jaw)."""
    v = model.vertices
    y_cut = float(v[SUBNASALE, 1] + params.cut * (v[PRONASALE, 1] - v[SUBNASALE, 1]))
    y_horn = y_cut + params.horn_rise_cm
    y_chin = float(v[CHIN, 1])
    oval = list(FACE_OVAL)
    chin_at = oval.index(CHIN)
    right_side = v[oval[: chin_at + 1]]
    left_side = v[[*oval[chin_at:], oval[0]]][::-1]
    right = _crossing(right_side, y_horn)
    left = _crossing(left_side, y_horn)
    if right is None or left is None:
        raise ValueError("horn height is outside the face oval; lower horn_rise_cm")
    jaw = np.concatenate(
        [[right[1]], right_side[right[0] + 1 :], left_side[left[0] + 1 :][::-1][1:], [left[1]]], axis=0
    )
    centre = np.array([0.0, (y_cut + y_chin) / 2])
    out = jaw[:, :2] - centre
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    w = np.clip((y_cut - jaw[:, 1]) / max(y_cut - y_chin, 1e-6), 0.0, 1.0)
    jaw[:, :2] += params.jaw_margin_cm * out
    jaw[:, 1] -= params.chin_drop_cm * w**2

    x_left, x_right = jaw[-1, 0], jaw[0, 0]
    xs = np.linspace(x_left, x_right, params.top_samples)[1:-1]
    u = (2 * xs - (x_left + x_right)) / (x_right - x_left)
    ys = y_cut + ((jaw[0, 1] + jaw[-1, 1]) / 2 - y_cut) * np.abs(u) ** params.horn_power
    zs = _surface_depth(v, np.stack([xs, ys], axis=1))
    top = np.stack([xs, ys, zs], axis=1)
    return np.concatenate([jaw[-1:], top, jaw[:-1]], axis=0)


def _densify(outline: F64, step: float) -> F64:
    """Closed outline with extra points so that no segment is longer than `step`."""
    points = []
    for a, b in zip(outline, np.roll(outline, -1, axis=0), strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b[:2] - a[:2]) / step)))
        points.append(a + (b - a) * (np.arange(n)[:, None] / n))
    return np.concatenate(points, axis=0)


def _inside(polygon: F64, points: F64) -> NDArray[np.bool_]:
    """Even-odd point-in-polygon test of (N, 2) points against a closed (K, 2) polygon."""
    x, y = points[:, 0:1], points[:, 1:2]
    ax, ay = polygon[:, 0], polygon[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    crosses = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = ax + (y - ay) * (bx - ax) / (by - ay)
    return ((crosses & (x < x_at)).sum(axis=1) % 2) == 1


@dataclass(frozen=True)
class Template:
    """Triangulated model-space surface patch: vertices (K, 3) in cm and triangles (F, 3) indices."""

    vertices: F64
    triangles: NDArray[np.int32]


def lower_face_template(
    model: FaceModel, params: MaskParams = MaskParams(), step: float = 0.5, inner_step: float = 1.0
) -> Template:
    """The region inside `template_outline` as a surface patch: outline points every `step` cm, interior
    grid every `inner_step` cm (the interior only has to be covered; the outline carries the shape).

    Rasterising the union of its projected triangles, rather than filling the projected outline, gives the
    true silhouette when the head turns: the far jaw line then lies behind the cheek instead of folding the
    outline over itself.
    """
    outline = _densify(template_outline(model, params), step)
    lo, hi = outline[:, :2].min(axis=0), outline[:, :2].max(axis=0)
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], inner_step), np.arange(lo[1], hi[1], inner_step))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    grid = grid[_inside(outline[:, :2], grid)]
    far = np.min(np.linalg.norm(grid[:, None] - outline[None, :, :2], axis=2), axis=1) > 0.5 * step
    grid = grid[far]
    inner = np.concatenate([grid, _surface_depth(model.vertices, grid)[:, None]], axis=1)
    vertices = np.concatenate([outline, inner], axis=0)
    tri = Delaunay(vertices[:, :2]).simplices
    centroids = vertices[tri, :2].mean(axis=1)
    tri = tri[_inside(outline[:, :2], centroids)]
    return Template(vertices=vertices, triangles=tri.astype(np.int32))


def _surface_depth(vertices: F64, xy: F64, k: int = 4) -> F64:
    """z of the face surface under model-space (x, y) points: inverse-distance average of the k nearest
    mesh vertices in (x, y) (the mesh is ~0.5–1 cm dense, about the template's own spacing)."""
    d = np.linalg.norm(xy[:, None, :] - vertices[None, :, :2], axis=2)
    nearest = np.argpartition(d, k, axis=1)[:, :k]
    dist = np.take_along_axis(d, nearest, axis=1)
    w = 1.0 / np.maximum(dist, 1e-6) ** 2
    return (w * vertices[nearest, 2]).sum(axis=1) / w.sum(axis=1)


def rasterize(points: F64, triangles: NDArray[np.int32], size: int = 256) -> Mask:
    """Union of the (F, 3) triangles over (K, 2) pixel points as a size×size uint8 mask (0/255)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    if not np.isfinite(points).all():
        return mask
    pts = np.round(points * 16).astype(np.int32)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    if hi[0] < 0 or hi[1] < 0 or lo[0] >= size * 16 or lo[1] >= size * 16:
        return mask
    for tri in pts[triangles]:
        cv2.fillConvexPoly(mask, tri, (255,), lineType=cv2.LINE_8, shift=4)
    return mask


class PoseMasker:
    """Masks for one person: the template is built once from their `FaceModel`, then projected per frame."""

    def __init__(self, model: FaceModel, params: MaskParams = MaskParams(), size: int = 256) -> None:
        self.model = model
        self.params = params
        self.size = size

    @cached_property
    def template(self) -> Template:
        """The model-space surface patch."""
        return lower_face_template(self.model, self.params)

    @cached_property
    def outline(self) -> F64:
        """The model-space outline (K, 3) (for drawing)."""
        return template_outline(self.model, self.params)

    def pose(self, landmarks: NDArray[np.floating]) -> Pose:
        """Head pose from one frame's (478, 3) crop-space landmarks (rigid points only)."""
        return self.model.fit(landmarks)

    def __call__(self, landmarks: NDArray[np.floating]) -> Mask:
        """Binary 0/255 mask (size, size) for one frame's crop-space landmarks (NaN landmarks → all zero)."""
        if not np.isfinite(np.asarray(landmarks)).all():
            return np.zeros((self.size, self.size), dtype=np.uint8)
        pose = self.pose(landmarks)
        return rasterize(pose.project(self.template.vertices), self.template.triangles, self.size)


def keep_mask(mask: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Soft keep-map K in [0, 1], (H, W) float32, exactly as the official demo (spec §3.3).

    Dilate with a 3×3 ones kernel 9 times, invert, Gaussian blur 21×21 with σ from OpenCV's rule
    (0.3·((21−1)/2 − 1) + 0.8 = 3.5), all on uint8 like the original, then divide by 255. K is 1 where the
    frame is kept and 0 where the generator's output is used.
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype != np.uint8:
        raise ValueError(f"mask must be uint8 0/255, got {m.dtype}")
    dilated = cv2.dilate(m, np.ones((3, 3), np.uint8), iterations=9)
    blurred = cv2.GaussianBlur(255 - dilated, (21, 21), 0)
    return (blurred.astype(np.float32) / 255.0).astype(np.float32)


def read_mask(path: str | Path) -> Mask:
    """Read an official-format mask image (jpg/png, white = regenerate) as (H, W) uint8, values as stored."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"cannot read mask image {path}")
    return np.asarray(image, dtype=np.uint8)


def write_mask(path: str | Path, mask: Mask) -> None:
    """Write a mask in the official format: single-channel image, 255 = regenerate (jpg quality 100)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if str(path).lower().endswith((".jpg", ".jpeg")) else []
    if not cv2.imwrite(str(path), np.asarray(mask, dtype=np.uint8), params):
        raise OSError(f"cannot write mask image {path}")
