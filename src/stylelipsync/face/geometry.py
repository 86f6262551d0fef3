"""3-D face shape of the tracked person and per-frame head pose (Umeyama similarity on rigid points).

MediaPipe's canonical face model (`canonical_face_model.obj` / the geometry-pipeline metadata) is not shipped
in the installed mediapipe 0.10.21 wheel, so the 3-D shape the pose-aware mask is built on is estimated from
the track itself: every frame's landmarks are aligned on the rigid points (generalised Procrustes), and the
per-vertex median over the frames with the most closed mouth is taken. This is the subject's own identity
with one fixed expression, which is what the official Deep3DFaceRecon masks use too.

Coordinates ("model space"): centimetres, origin midway between the outer eye corners, +x toward the image
right, +y up (forehead top − chin direction), +z toward the viewer, like MediaPipe's canonical model. The
scale puts the outer eye corners 8.9 cm apart (the adult mean biocular width, which is also the distance in
MediaPipe's canonical model).

Landmarks (x, y, z in pixels, y down, z away from the camera) enter the fit as (x, −y, −z): a right-handed
frame with +y up and +z toward the viewer, so the fitted rotation is proper and projection is orthographic,
matching FaceMesh's own (weak-perspective) output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.landmarks import (
    CHIN,
    FOREHEAD_TOP,
    INNER_LIP_BOTTOM,
    INNER_LIP_TOP,
    LEFT_EYE_OUTER,
    NUM_MESH,
    RIGHT_EYE_OUTER,
    RIGID,
)

BIOCULAR_WIDTH_CM = 8.9
_RIGID = np.asarray(RIGID)

F64 = NDArray[np.float64]


def to_viewer(landmarks: NDArray[np.floating]) -> F64:
    """Image landmarks (x, y down, z away) → right-handed viewer coordinates (x, −y, −z)."""
    v = np.asarray(landmarks, dtype=np.float64)[..., :3].copy()
    v[..., 1:] *= -1
    return v


def umeyama(src: F64, dst: F64) -> tuple[float, F64, F64]:
    """Least-squares similarity dst ≈ s·R·src + t between (N, 3) point sets (Umeyama 1991), det R = +1."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    r = u @ sign @ vt
    var = (a**2).sum() / len(src)
    s = float(np.trace(np.diag(d) @ sign) / var) if var > 0 else 1.0
    return s, r, mu_d - s * r @ mu_s


@dataclass(frozen=True)
class Pose:
    """Similarity from model space to viewer coordinates of an image: v = scale·R·p + t."""

    scale: float
    rotation: F64
    translation: F64

    def apply(self, points: F64) -> F64:
        """Model points (N, 3) → viewer coordinates (N, 3)."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    def project(self, points: F64) -> F64:
        """Model points (N, 3) → image pixels (N, 2), orthographic."""
        v = self.apply(points)
        return np.stack([v[:, 0], -v[:, 1]], axis=1)

    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees from R = Rz(roll)·Rx(pitch)·Ry(yaw) (for reports and tests)."""
        r = self.rotation
        pitch = float(np.degrees(np.arcsin(np.clip(r[2, 1], -1.0, 1.0))))
        yaw = float(np.degrees(np.arctan2(-r[2, 0], r[2, 2])))
        roll = float(np.degrees(np.arctan2(-r[0, 1], r[1, 1])))
        return yaw, pitch, roll


@dataclass(frozen=True)
class FaceModel:
    """(468, 3) mesh vertices of one person in model space (cm); see the module docstring."""

    vertices: F64

    @classmethod
    def from_landmarks(
        cls,
        landmarks: NDArray[np.floating],
        valid: NDArray[np.bool_] | None = None,
        max_frames: int = 300,
        closed_fraction: float = 0.3,
    ) -> FaceModel:
        """Estimate the shape from (T, 478|468, 3) or (478|468, 3) landmarks.

        Frames are aligned on the rigid points; the median is taken over the `closed_fraction` of frames
        with the smallest inner-lip gap. With a single frame the shape keeps that frame's jaw: estimate from a
        whole track when the mask must not depend on one frame's mouth.
        """
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.ndim == 2:
            lm = lm[None]
        keep = np.isfinite(lm[:, :NUM_MESH]).all(axis=(1, 2))
        if valid is not None:
            keep &= np.asarray(valid, dtype=bool)
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            raise ValueError("no frame with landmarks to estimate the face shape from")
        if idx.size > max_frames:
            idx = idx[np.linspace(0, idx.size - 1, max_frames).round().astype(int)]
        shapes = to_viewer(lm[idx, :NUM_MESH])
        ref = shapes[0]
        aligned = shapes
        for _ in range(3):
            aligned = np.empty_like(shapes)
            for i, shape in enumerate(shapes):
                s, r, t = umeyama(shape[_RIGID], ref[_RIGID])
                aligned[i] = s * shape @ r.T + t
            mean = aligned.mean(axis=0)
            s, r, t = umeyama(mean[_RIGID], ref[_RIGID])
            ref = s * mean @ r.T + t
        gap = np.linalg.norm(aligned[:, INNER_LIP_TOP] - aligned[:, INNER_LIP_BOTTOM], axis=1)
        n_closed = max(1, int(np.ceil(closed_fraction * len(aligned))))
        closed = aligned[np.argsort(gap, kind="stable")[:n_closed]]
        return cls(vertices=_canonical_frame(np.median(closed, axis=0)))

    def fit(self, landmarks: NDArray[np.floating], use_depth: bool = False) -> Pose:
        """Pose of this shape in an image from that image's (478, 3) landmarks, using rigid points only.

        A 3-D Umeyama fit starts it; unless `use_depth`, it is then refined on the image x, y alone.
        FaceMesh's z of the nose and forehead tilts a little when the mouth opens (correlation up to 0.6 with
        the lip gap on the shared clips), x, y do not: fitting x, y keeps that mouth cue out of the mask.
        """
        dst = to_viewer(np.asarray(landmarks)[_RIGID])
        src = self.vertices[_RIGID]
        s, r, t = umeyama(src, dst)
        if not use_depth:
            s, r, t = _refine_on_image(src, dst[:, :2], s, r, t)
        return Pose(scale=s, rotation=r, translation=t)


def _skew(v: F64) -> F64:
    """(N, 3) vectors → (N, 3, 3) cross-product matrices."""
    z = np.zeros(len(v))
    return np.stack(
        [
            np.stack([z, -v[:, 2], v[:, 1]], axis=1),
            np.stack([v[:, 2], z, -v[:, 0]], axis=1),
            np.stack([-v[:, 1], v[:, 0], z], axis=1),
        ],
        axis=1,
    )


def _rodrigues(w: F64) -> F64:
    """Rotation matrix of the axis-angle vector w."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    k = _skew((w / angle)[None])[0]
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _refine_on_image(
    src: F64, xy: F64, s: float, r: F64, t: F64, iterations: int = 6
) -> tuple[float, F64, F64]:
    """Gauss-Newton on the orthographic image error |s·(R·p)_xy + t_xy − xy|² over rotation, log-scale and
    t_xy; t_z is kept (it does not affect the projection)."""
    t = t.copy()
    for _ in range(iterations):
        q = src @ r.T
        residual = (s * q[:, :2] + t[:2] - xy).ravel()
        jac = np.zeros((len(src), 2, 6))
        jac[:, :, :3] = -s * _skew(q)[:, :2, :]
        jac[:, :, 3] = s * q[:, :2]
        jac[:, 0, 4] = 1.0
        jac[:, 1, 5] = 1.0
        jac = jac.reshape(-1, 6)
        step = np.linalg.solve(jac.T @ jac + 1e-9 * np.eye(6), -jac.T @ residual)
        r = _rodrigues(step[:3]) @ r
        s *= float(np.exp(step[3]))
        t[:2] += step[4:]
        if np.abs(step).max() < 1e-9:
            break
    return s, r, t


def _canonical_frame(shape: F64) -> F64:
    """Rotate, scale and translate a (468, 3) viewer-space shape into model space."""
    right, left = shape[RIGHT_EYE_OUTER], shape[LEFT_EYE_OUTER]
    x = left - right
    x /= np.linalg.norm(x)
    up = shape[FOREHEAD_TOP] - shape[CHIN]
    y = up - np.dot(up, x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    basis = np.stack([x, y, z], axis=1)
    scale = BIOCULAR_WIDTH_CM / float(np.linalg.norm(left - right))
    return scale * (shape - (left + right) / 2) @ basis
