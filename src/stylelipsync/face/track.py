"""Follow one face through a video: per-frame landmarks, gap filling and zero-lag temporal smoothing.

`track_face` is the first pass over a streamed video: it keeps only landmarks (478 × 3 float32 per frame,
about 5.6 kB, twice: raw and smoothed), never frames, so the caller can re-decode for the second pass.

Per frame it runs FaceMesh on a crop around the previous frame's landmarks (cheap: no detector) and falls
back to BlazeFace + FaceMesh on the whole frame when the face is lost. Identity is kept by overlap with the
last box.

Smoothing is a centred Gaussian-weighted (local-linear) average, not a One-Euro filter: the whole track is
known before anything is rendered, so a zero-phase (non-causal) filter removes jitter without the lag a
causal filter such as One-Euro trades for it; a lagging crop or mask would slide over a moving face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.detect import Box, Face, FaceDetector, box_iou, landmark_box
from stylelipsync.face.landmarks import NUM_LANDMARKS
from stylelipsync.startup_trace import mark

BoxLike = tuple[float, float, float, float] | Box


@dataclass
class FaceTrack:
    """Landmarks of one face over T frames, in frame pixels (z scaled like x).

    `landmarks` (T, 478, 3) float32 are gap-filled and smoothed (NaN where `valid` is False); use them for
    crop, pose and mask. `raw` are the detections as found (NaN where nothing was found); use them where
    mouth motion matters. `valid` frames get processed; the others must be passed through untouched.
    """

    landmarks: NDArray[np.float32]
    raw: NDArray[np.float32]
    valid: NDArray[np.bool_]
    detected: NDArray[np.bool_]
    fps: float
    frame_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    def observed(self) -> NDArray[np.float32]:
        """(T, 478, 3) each frame's own detection where there is one, else the smoothed (gap-filled) track:
        the landmarks that agree with a frame's pixels, for pasting something onto that very frame."""
        return np.where(self.detected[:, None, None], self.raw, self.landmarks)

    def box(self, t: int) -> Box | None:
        """Smoothed landmark box of frame t, or None if the frame is invalid."""
        return landmark_box(self.landmarks[t]) if self.valid[t] else None

    def save(self, path: str | Path) -> None:
        """Write the track to a compressed .npz (for caching the first pass)."""
        np.savez_compressed(
            path,
            landmarks=self.landmarks,
            raw=self.raw,
            valid=self.valid,
            detected=self.detected,
            fps=np.float64(self.fps),
            frame_size=np.asarray(self.frame_size, dtype=np.int64),
        )

    @classmethod
    def load(cls, path: str | Path) -> FaceTrack:
        """Read a track written by `save`."""
        with np.load(path) as data:
            w, h = (int(v) for v in data["frame_size"])
            return cls(
                landmarks=data["landmarks"].astype(np.float32),
                raw=data["raw"].astype(np.float32),
                valid=data["valid"].astype(bool),
                detected=data["detected"].astype(bool),
                fps=float(data["fps"]),
                frame_size=(w, h),
            )


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(start, stop) of every run of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def fill_gaps(
    raw: NDArray[np.float32], detected: NDArray[np.bool_], max_gap: int, min_run: int = 3
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Interpolate missed detections; return (landmarks, valid).

    Interior gaps of at most `max_gap` frames are filled linearly between the detections around them; gaps of
    at most `max_gap` frames at the clip ends hold the nearest detection. Longer gaps stay invalid (NaN), and
    so do detection runs shorter than `min_run` frames surrounded by invalid frames (isolated false hits).
    """
    t_len = raw.shape[0]
    out = np.full_like(raw, np.nan)
    valid = detected.copy()
    for start, stop in _runs(detected):
        if stop - start < min_run and not (start == 0 and stop == t_len):
            valid[start:stop] = False
    for start, stop in _runs(~valid):
        length = stop - start
        if length > max_gap:
            continue
        if start > 0 and stop < t_len:
            a, b = raw[start - 1], raw[stop]
            w = (np.arange(1, length + 1, dtype=np.float32) / (length + 1))[:, None, None]
            out[start:stop] = (1 - w) * a + w * b
            valid[start:stop] = True
        elif start == 0 and stop < t_len:
            out[start:stop] = raw[stop]
            valid[start:stop] = True
        elif start > 0:
            out[start:stop] = raw[start - 1]
            valid[start:stop] = True
    keep = valid & detected
    out[keep] = raw[keep]
    return out, valid


def smooth(landmarks: NDArray[np.float32], valid: NDArray[np.bool_], sigma: float) -> NDArray[np.float32]:
    """Centred Gaussian smoothing (σ in frames) inside each valid run, as a local-linear fit.

    In the middle of a run this equals the Gaussian-weighted moving average; near the ends of a run (where
    the window is one-sided) fitting a line instead of a mean keeps a moving face from lagging behind.
    Nothing is mixed across gaps. σ ≤ 0 returns a copy.
    """
    out = landmarks.copy()
    if sigma <= 0:
        return out
    radius = max(1, round(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    columns = int(np.prod(landmarks.shape[1:]))
    source = landmarks.reshape(len(landmarks), columns)
    target = out.reshape(len(out), columns)
    for start, stop in _runs(valid):
        if stop - start < 2:
            continue
        # Column blocks bound the float64 temporaries (about 8 copies of the block) on long videos.
        for c0 in range(0, source.shape[1], _SMOOTH_COLUMNS):
            cols = slice(c0, c0 + _SMOOTH_COLUMNS)
            target[start:stop, cols] = _local_linear(source[start:stop, cols], offsets, kernel, radius)
    return out


_SMOOTH_COLUMNS = 96


def _local_linear(
    seg32: NDArray[np.float32], offsets: NDArray[np.int64], kernel: NDArray[np.float64], radius: int
) -> NDArray[np.float32]:
    """Gaussian-weighted local-linear fit along time of each column of one valid run (n, C)."""
    n = seg32.shape[0]
    seg = seg32.astype(np.float64)
    pad = np.zeros((n + 2 * radius, seg.shape[1]))
    pad[radius : radius + n] = seg
    inside = np.zeros(n + 2 * radius)
    inside[radius : radius + n] = 1.0
    s0, s1, s2 = np.zeros(n), np.zeros(n), np.zeros(n)
    t0, t1 = np.zeros_like(seg), np.zeros_like(seg)
    for k, (d, wk) in enumerate(zip(offsets, kernel, strict=True)):
        w = wk * inside[k : k + n]
        s0 += w
        s1 += w * d
        s2 += w * d * d
        wx = w[:, None] * pad[k : k + n]
        t0 += wx
        t1 += d * wx
    det = s0 * s2 - s1 * s1
    ok = det > 1e-9 * np.maximum(s0 * s2, 1e-12)
    fit = np.where(
        ok[:, None],
        (s2[:, None] * t0 - s1[:, None] * t1) / np.where(ok, det, 1.0)[:, None],
        t0 / s0[:, None],
    )
    return fit.astype(np.float32)


class _Selector:
    """Chooses the face to follow among detections: first by the user's rule, later by continuity."""

    def __init__(self, face_index: int | None, bbox: BoxLike | None) -> None:
        self.face_index = face_index
        self.hint = None if bbox is None else np.asarray(bbox, dtype=np.float32)

    def initial(self, faces: list[Face]) -> Face | None:
        """The face the user named: overlapping the bbox hint, else the face_index-th largest."""
        if not faces:
            return None
        if self.hint is not None:
            hint = self.hint
            overlaps = [box_iou(f.box, hint) for f in faces]
            centre_in = [
                hint[0] <= (f.box[0] + f.box[2]) / 2 <= hint[2]
                and hint[1] <= (f.box[1] + f.box[3]) / 2 <= hint[3]
                for f in faces
            ]
            best = int(np.argmax(overlaps))
            if overlaps[best] > 0.05:
                return faces[best]
            inside = [f for f, c in zip(faces, centre_in, strict=True) if c]
            return inside[0] if inside else None
        index = self.face_index or 0
        return faces[index] if index < len(faces) else None

    def in_hint(self, det: FaceDetector, frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        """FaceMesh inside the bbox hint when the detector found no face at all (small, turned, occluded)."""
        if self.hint is None:
            return None
        landmarks = det.landmarks_near(frame, self.hint)
        if landmarks is None:
            return None
        centre = (landmark_box(landmarks)[:2] + landmark_box(landmarks)[2:]) / 2
        inside = bool(np.all(centre >= self.hint[:2]) and np.all(centre <= self.hint[2:]))
        return landmarks if inside else None

    @staticmethod
    def nearest(faces: list[Face], last_box: Box) -> Face | None:
        """The detection that continues the last box: overlapping it, or centred within 0.75 box sizes."""
        size = max(last_box[2] - last_box[0], last_box[3] - last_box[1])
        centre = (last_box[:2] + last_box[2:]) / 2
        best: Face | None = None
        best_score = -np.inf
        for face in faces:
            lm_box = landmark_box(face.landmarks)
            dist = float(np.linalg.norm((lm_box[:2] + lm_box[2:]) / 2 - centre)) / size
            score = box_iou(lm_box, last_box) - 0.1 * dist
            if (box_iou(lm_box, last_box) > 0.1 or dist < 0.75) and score > best_score:
                best, best_score = face, score
        return best


def track_face(
    frames: Iterable[NDArray[np.uint8]],
    *,
    face_index: int | None = None,
    bbox: BoxLike | None = None,
    fps: float = 25.0,
    max_gap_s: float = 0.5,
    smooth_s: float = 0.08,
    detector: FaceDetector | None = None,
    progress: Callable[[int], None] | None = None,
    on_frame: Callable[[int, NDArray[np.uint8], NDArray[np.float32] | None], None] | None = None,
) -> FaceTrack:
    """Track one face through RGB uint8 frames (any iterable, consumed once; frames are not kept).

    The face is chosen in the first frame that has one: the face overlapping `bbox` (x0, y0, x1, y1) if
    given, else the `face_index`-th largest (0 = largest, the default). It is then followed by overlap with
    its previous position. After it has been lost for more than `max_gap_s`, the first rule picks it again.
    Gaps up to `max_gap_s` are interpolated; landmarks are smoothed with a centred Gaussian of σ = `smooth_s`
    seconds. `progress(n)` is called after each frame with the number of frames done. `on_frame(t, frame,
    landmarks)` sees every frame with its raw landmarks (None if none were found) while the frame is still at
    hand, so a caller can keep what it needs of it (the mouth bank keeps face crops) without decoding again.
    """
    if face_index is not None and bbox is not None:
        raise ValueError("give face_index or bbox, not both")
    own = detector is None
    det = FaceDetector() if detector is None else detector
    mark("face detector ready", once=True)
    selector = _Selector(face_index, bbox)
    max_gap = max(0, round(max_gap_s * fps))
    raw: list[NDArray[np.float32] | None] = []
    size: tuple[int, int] = (0, 0)
    last_box: Box | None = None
    last_seen = -(10**9)
    try:
        for t, frame in enumerate(frames):
            size = (int(frame.shape[1]), int(frame.shape[0]))
            landmarks = None
            if last_box is not None and last_seen == t - 1:
                landmarks = det.landmarks_near(frame, last_box, tracking=True, from_landmarks=True)
                if landmarks is not None and box_iou(landmark_box(landmarks), last_box) < 0.3:
                    landmarks = None
            if landmarks is None:
                faces = det.detect(frame)
                face = None
                if last_box is not None:
                    face = _Selector.nearest(faces, last_box)
                if face is None and (last_box is None or t - last_seen > max_gap):
                    face = selector.initial(faces)
                    if face is None and not faces:
                        landmarks = selector.in_hint(det, frame)
                if face is not None:
                    landmarks = face.landmarks
            if landmarks is not None:
                last_box, last_seen = landmark_box(landmarks), t
            raw.append(landmarks)
            mark("first frame tracked", once=True)
            if on_frame is not None:
                on_frame(t, frame, landmarks)
            if progress is not None:
                progress(t + 1)
    finally:
        if own:
            det.close()
    return _finish(raw, fps, size, max_gap, smooth_s)


def _finish(
    raw_list: list[NDArray[np.float32] | None],
    fps: float,
    size: tuple[int, int],
    max_gap: int,
    smooth_s: float,
) -> FaceTrack:
    t_len = len(raw_list)
    raw = np.full((t_len, NUM_LANDMARKS, 3), np.nan, dtype=np.float32)
    detected = np.zeros(t_len, dtype=bool)
    for t, lm in enumerate(raw_list):
        if lm is not None:
            raw[t] = lm
            detected[t] = True
    filled, valid = fill_gaps(raw, detected, max_gap)
    smoothed = smooth(filled, valid, smooth_s * fps)
    smoothed[~valid] = np.nan
    return FaceTrack(landmarks=smoothed, raw=raw, valid=valid, detected=detected, fps=fps, frame_size=size)
