"""The mouth bank: every kept source frame as a candidate mouth, with what selection and rendering need.

Per entry: its lower-face crop (on disk, see `collect`), its landmarks in that crop and its mouth-shape
descriptor (both from that frame's own detection, so the crop's pixels and its landmarks agree and fast lip
motion is kept; the landmarks moved as a whole to where the image puts the face, see `steady`) and its head
pose. Descriptors are z-scored over the bank, which is how a prediction in
per-clip z-units is mapped into *this* person's own range of shapes. Entries of several videos of the same
person (`--bank-video`) are pooled; each video's own mean lip shape is removed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.crop import warp_landmarks
from stylelipsync.face.geometry import FaceModel
from stylelipsync.face.landmarks import NUM_MESH
from stylelipsync.face.mouth_shape import LipBasis, MouthShapes, mouth_shapes
from stylelipsync.face.track import FaceTrack
from stylelipsync.pipelines.engines.bank.collect import CropCollector
from stylelipsync.pipelines.engines.bank.steady import steady_shifts

TYPICAL_OPENING_STD_CM = 0.42
"""Standard deviation of the inner-lip gap of a person talking (median over the shared talking clips is
0.42 cm, 10th-90th percentile 0.29-0.59). A bank whose openings vary much less than this cannot show
speech by selection alone."""
TYPICAL_OPENING_QUANTILES = (
    (0.0, 0.0),
    (0.05, 0.03),
    (0.25, 0.24),
    (0.5, 0.63),
    (0.75, 0.96),
    (0.95, 1.37),
    (1.0, 1.6),
)
"""(quantile, cm) of the inner-lip gap of a person talking (medians over the shared talking clips): the
openings asked of a bank that lacks them."""
POOR_COVERAGE = 0.4
"""A bank with an opening spread below this fraction of the typical one has poor coverage."""


@dataclass
class BankVideo:
    """One video's contribution: its collector (crops) and track (landmarks)."""

    collector: CropCollector
    track: FaceTrack


class MouthBank:
    """Entries from one or more `BankVideo`s (the first is the input video)."""

    def __init__(self, videos: list[BankVideo], basis: LipBasis | None = None) -> None:
        basis = basis or LipBasis.default()
        self.videos = videos
        self.models: list[FaceModel | None] = []
        """Each video's 3-D face shape (None for a video without a usable face)."""
        parts: dict[str, list[NDArray]] = {k: [] for k in ("video", "row", "source", "lm", "desc", "pose")}

        for v, bv in enumerate(videos):
            track, col = bv.track, bv.collector
            frames = np.asarray(col.frames, dtype=np.int64)
            if frames.size == 0 or not track.valid.any():
                self.models.append(None)
                continue
            model = FaceModel.from_landmarks(track.landmarks, track.valid)
            self.models.append(model)
            # Each box's own detection: its pixels and its landmarks must agree (see render). Only the kept
            # frames' (`FaceTrack.observed` of those frames, without a copy of the whole track).
            detected = track.detected[frames, None, None]
            observed = np.where(detected, track.raw[frames], track.landmarks[frames])
            shapes: MouthShapes = mouth_shapes(observed, model, track.valid[frames])
            ok = shapes.valid & np.isfinite(observed[:, :NUM_MESH]).all(axis=(1, 2))
            rows = np.flatnonzero(ok)
            if rows.size == 0:
                continue
            desc = shapes.descriptor(basis, mean=shapes.lips[ok].mean(axis=0))
            lm = np.stack([warp_landmarks(observed[r], col.matrices[r])[:, :2] for r in rows])
            # Where the mouth is placed from: the face's place in the image, not the detection's frame noise.
            lm += steady_shifts(col, observed)[rows][:, None, :]
            parts["video"].append(np.full(rows.size, v))
            parts["row"].append(rows)
            parts["source"].append(frames[rows])
            parts["lm"].append(lm.astype(np.float32))
            parts["desc"].append(desc[rows])
            parts["pose"].append(shapes.pose[rows])
        if not parts["video"]:
            raise ValueError("no bank entry: no frame with a tracked face")
        self.video = np.concatenate(parts["video"])
        self.row = np.concatenate(parts["row"])
        self.source = np.concatenate(parts["source"])
        self.landmarks = np.concatenate(parts["lm"])
        self.descriptor = np.concatenate(parts["desc"])
        self.pose = np.concatenate(parts["pose"])
        self.follows = np.zeros(len(self), dtype=bool)
        self.follows[1:] = (self.video[1:] == self.video[:-1]) & (self.source[1:] == self.source[:-1] + 1)
        self.mean = self.descriptor.mean(axis=0)
        self.std = self.descriptor.std(axis=0)
        spread = float(self.std[0])
        self.coverage = spread / TYPICAL_OPENING_STD_CM
        # Scale of the z-units: the bank's own spread, or (for a bank that barely moves) the typical one, so a
        # prediction still asks for the openings the bank lacks and the renderer reshapes the mouth to them.
        self.scale = np.maximum(self.std, 1e-3)
        if self.poor_coverage:
            self.scale[0] = TYPICAL_OPENING_STD_CM
        self.z = (self.descriptor - self.mean) / self.scale
        closed = np.argsort(self.descriptor[:, 0], kind="stable")[: max(1, len(self) // 10)]
        self.rest = self.z[closed].mean(axis=0)
        if self.poor_coverage:
            self.rest[0] = (TYPICAL_OPENING_QUANTILES[1][1] - self.mean[0]) / self.scale[0]

    def __len__(self) -> int:
        return int(self.video.shape[0])

    @property
    def poor_coverage(self) -> bool:
        """True when the bank's mouths open and close too little to show speech by selection alone."""
        return self.coverage < POOR_COVERAGE

    def region(self, i: int) -> NDArray[np.uint8]:
        """Entry i's stored lower-face box (the coordinates of `landmarks[i]`)."""
        col = self.videos[int(self.video[i])].collector
        assert col.store is not None
        return col.store[int(self.row[i])]

    def opening_reference(self) -> NDArray[np.float64]:
        """Openings (z-units) the speech is mapped onto by quantiles: the bank's own, or, with poor coverage,
        those of a typical talking person."""
        if not self.poor_coverage:
            return np.asarray(self.z[:, 0], dtype=np.float64)
        q, cm = zip(*TYPICAL_OPENING_QUANTILES, strict=True)
        typical = np.interp(np.linspace(0, 1, 201), q, cm)
        return np.asarray((typical - self.mean[0]) / self.scale[0], dtype=np.float64)

    def opening_cm(self, z: NDArray[np.floating]) -> NDArray[np.float64]:
        """Inner-lip gap in cm that z-units of the opening stand for in this bank."""
        return np.asarray(self.mean[0] + np.asarray(z, dtype=np.float64) * self.scale[0])

    def close(self) -> None:
        """Free every video's stored crops."""
        for v in self.videos:
            v.collector.close()
