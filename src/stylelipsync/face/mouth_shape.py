"""Pose-normalised mouth shape per frame: the descriptor the mouth-bank engine selects by and the
audio → mouth-shape model predicts.

Each frame's 40 lip landmarks (outer and inner contour) are taken into the person's model space (see
`geometry`: centimetres, eyes level, frontal) with the similarity fitted on the rigid points, so the shape
does not change when the head turns, nods or moves closer. The descriptor of a frame is

* `opening`: inner-lip gap (landmarks 13-14) in cm;
* `width`: outer mouth-corner distance (61-291) in cm;
* `pc1`…`pcK`: coefficients of the lip shape (80 numbers, minus the clip's mean shape, so identity drops
  out) on a fixed basis of principal lip deformations fitted on the shared clips of many persons
  (`assets/lip_basis.safetensors`, `scripts/fit_lip_basis.py`).

Also returned: the head pose (yaw, pitch, roll in degrees) of every frame, which the bank uses to prefer
mouths filmed from the target's angle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from safetensors import safe_open
from safetensors.numpy import save_file

from stylelipsync.errors import CheckpointError
from stylelipsync.face.geometry import F64, FaceModel, Pose, to_viewer, umeyama
from stylelipsync.face.landmarks import LIPS_INNER, LIPS_OUTER, RIGID

LIP_POINTS = LIPS_OUTER + LIPS_INNER
"""The 40 landmarks whose shape is described (outer contour, then inner contour)."""
_LIPS = np.asarray(LIP_POINTS)
_RIGID = np.asarray(RIGID)
_TOP, _BOTTOM = LIP_POINTS.index(13), LIP_POINTS.index(14)
_CORNER_R, _CORNER_L = LIP_POINTS.index(61), LIP_POINTS.index(291)
BASIS_ASSET = "lip_basis.safetensors"


@dataclass(frozen=True)
class LipBasis:
    """Principal deformations of the pose-normalised lip shape, (K, 80) orthonormal rows (cm units)."""

    components: NDArray[np.float64]
    info: dict[str, str]

    @property
    def size(self) -> int:
        return int(self.components.shape[0])

    def save(self, path: str | Path) -> None:
        """Write as safetensors, with provenance in the metadata."""
        save_file(
            {"components": np.ascontiguousarray(self.components, dtype=np.float32)},
            str(path),
            metadata={"info": json.dumps(self.info)},
        )

    @classmethod
    def load(cls, path: str | Path) -> LipBasis:
        """Read a file written by `save`."""
        try:
            with safe_open(str(path), framework="np") as fh:
                comps = fh.get_tensor("components").astype(np.float64)
                info = json.loads((fh.metadata() or {}).get("info", "{}"))
        except (OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a lip basis file ({exc})") from exc
        if comps.ndim != 2 or comps.shape[1] != 2 * len(LIP_POINTS):
            raise CheckpointError(f"{path}: components have shape {comps.shape}, expected (K, 80)")
        return cls(comps, info)

    @classmethod
    def default(cls) -> LipBasis:
        """The basis shipped in the package."""
        return _default_basis()


@lru_cache(maxsize=1)
def _default_basis() -> LipBasis:
    asset = resources.files("stylelipsync") / "assets" / BASIS_ASSET
    with resources.as_file(asset) as path:
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: regenerate it with scripts/fit_lip_basis.py --media ../shared/media"
            )
        return LipBasis.load(path)


@dataclass
class MouthShapes:
    """Per-frame lip geometry of a clip in model space, and head pose.

    `lips` (T, 40, 2) cm, `pose` (T, 3) yaw/pitch/roll degrees; NaN rows where `valid` is False.
    """

    lips: NDArray[np.float64]
    pose: NDArray[np.float64]
    valid: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    @property
    def opening(self) -> NDArray[np.float64]:
        return np.linalg.norm(self.lips[:, _TOP] - self.lips[:, _BOTTOM], axis=1)

    @property
    def width(self) -> NDArray[np.float64]:
        return np.linalg.norm(self.lips[:, _CORNER_R] - self.lips[:, _CORNER_L], axis=1)

    def mean_shape(self) -> NDArray[np.float64]:
        """(40, 2) mean lip shape over the valid frames (the identity part the descriptor removes)."""
        return np.asarray(self.lips[self.valid].mean(axis=0)) if self.valid.any() else np.zeros((40, 2))

    def descriptor(self, basis: LipBasis | None = None, mean: NDArray[np.float64] | None = None) -> F64:
        """(T, 2 + K) opening, width and basis coefficients; NaN rows where invalid.

        `mean` is the lip shape removed before projecting (default: this clip's own mean shape).
        """
        basis = basis or LipBasis.default()
        centre = self.mean_shape() if mean is None else mean
        flat = (self.lips - centre[None]).reshape(len(self), -1)
        coeffs = flat @ basis.components.T
        out = np.concatenate([self.opening[:, None], self.width[:, None], coeffs], axis=1)
        out[~self.valid] = np.nan
        return out


def frame_pose(model: FaceModel, landmarks: NDArray[np.floating]) -> Pose:
    """Similarity model → viewer of one frame from its rigid points (3-D fit; no image refinement, so it
    costs tens of microseconds and can run on every frame of a long video)."""
    dst = to_viewer(np.asarray(landmarks)[_RIGID])
    s, r, t = umeyama(model.vertices[_RIGID], dst)
    return Pose(scale=s, rotation=r, translation=t)


def mouth_shapes(
    landmarks: NDArray[np.floating], model: FaceModel, valid: NDArray[np.bool_] | None = None
) -> MouthShapes:
    """Lip shapes and poses of (T, 478, 3) landmarks (pixels) of one person whose 3-D shape is `model`."""
    lm = np.asarray(landmarks)
    t_len = lm.shape[0]
    ok = np.isfinite(lm[:, : max(_LIPS.max(), _RIGID.max()) + 1]).all(axis=(1, 2))
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    lips = np.full((t_len, len(LIP_POINTS), 2), np.nan)
    pose = np.full((t_len, 3), np.nan)
    for t in np.flatnonzero(ok):
        p = frame_pose(model, lm[t])
        v = to_viewer(lm[t, _LIPS])
        lips[t] = (((v - p.translation) @ p.rotation) / p.scale)[:, :2]
        pose[t] = p.angles()
    return MouthShapes(lips=lips, pose=pose, valid=ok)


def fit_basis(centred_shapes: NDArray[np.floating], k: int) -> NDArray[np.float64]:
    """(k, 80) principal directions of (N, 40, 2) lip shapes from which each clip's mean was removed."""
    x = np.asarray(centred_shapes, dtype=np.float64).reshape(len(centred_shapes), -1)
    x = x[np.isfinite(x).all(axis=1)]
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    return comps * signs[:, None]


__all__ = [
    "LIP_POINTS",
    "LipBasis",
    "MouthShapes",
    "fit_basis",
    "frame_pose",
    "mouth_shapes",
]
