"""track_face on real clips: every frame tracked, jitter, gaps, face-less clips, several faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylelipsync.face.crop import similarity_scale
from stylelipsync.face.landmarks import LEFT_EYE_INNER, LEFT_EYE_OUTER, NASION, PRONASALE, RIGHT_EYE_INNER
from stylelipsync.face.landmarks import RIGHT_EYE_OUTER as R_OUT
from stylelipsync.face.track import FaceTrack, fill_gaps, smooth, track_face
from test_face_common import (
    FACELESS_CLIP,
    MULTI_FACE_CLIP,
    STILL_CLIP,
    TALKING,
    clip_fps,
    model_and_crops,
    read_frames,
    tracked,
)

JITTER_POINTS = [R_OUT, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER, NASION, PRONASALE]


def noise_px(points: np.ndarray) -> float:
    """Frame-to-frame noise of (T, N, 2) trajectories: RMS second difference / √6 (white noise of std σ has
    second differences of std √6·σ; smooth head motion contributes almost nothing)."""
    d2 = points[2:] - 2 * points[1:-1] + points[:-2]
    return float(np.sqrt((d2**2).mean() / 6))


def detrended_std_px(points: np.ndarray, window: int) -> float:
    """RMS distance of (T, N, 2) trajectories from their centred `window`-frame moving average."""
    kernel = np.ones(window) / window
    trend = np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, points)
    half = window // 2
    resid = points[half : half + trend.shape[0]] - trend
    return float(np.sqrt((resid**2).sum(axis=-1).mean()))


@pytest.mark.parametrize("name", list(TALKING))
def test_every_frame_tracked(media_dir: Path, name: str) -> None:
    track = tracked(media_dir, name, TALKING[name])
    assert len(track) == TALKING[name]
    assert track.detected.all() and track.valid.all()
    assert np.isfinite(track.landmarks).all() and np.isfinite(track.raw).all()
    assert track.landmarks.dtype == np.float32 and track.landmarks.shape == (len(track), 478, 3)


def test_jitter_on_still_head_is_small(media_dir: Path) -> None:
    track = tracked(media_dir, STILL_CLIP, TALKING[STILL_CLIP])
    _, crops = model_and_crops(media_dir, STILL_CLIP, TALKING[STILL_CLIP])
    scale = np.array([similarity_scale(m) for m in crops])[:, None, None]  # frame px → 256² crop px
    raw = track.raw[:, JITTER_POINTS, :2] * scale
    smoothed = track.landmarks[:, JITTER_POINTS, :2] * scale
    noise_raw, noise_smooth = noise_px(raw), noise_px(smoothed)
    second = round(clip_fps(media_dir, STILL_CLIP))
    detrended_raw = detrended_std_px(raw, window=second)
    detrended = detrended_std_px(smoothed, window=second)
    print(f"\njitter at 256² scale: noise raw {noise_raw:.3f} px, smoothed {noise_smooth:.3f} px; ")
    print(f"residual around a 1 s moving average: raw {detrended_raw:.3f} px, smoothed {detrended:.3f} px")
    assert noise_raw > 0.1, "FaceMesh is never this steady: the measurement is broken"
    assert noise_smooth < 0.1
    assert noise_smooth < 0.3 * noise_raw
    assert detrended < 1.5
    assert detrended < detrended_raw


def test_smoothing_does_not_lag_moving_head(media_dir: Path) -> None:
    """On a turning head the smoothed points follow the raw ones without a systematic delay."""
    name = "pcavs_Pose_Source_517600055.mp4"
    track = tracked(media_dir, name, TALKING[name])
    _, crops = model_and_crops(media_dir, name, TALKING[name])
    scale = np.array([similarity_scale(m) for m in crops])[:, None, None]
    raw = track.raw[:, JITTER_POINTS, :2] * scale
    smoothed = track.landmarks[:, JITTER_POINTS, :2] * scale
    bias = np.linalg.norm((smoothed - raw).mean(axis=(0, 1)))
    assert bias < 0.3
    assert np.sqrt(((smoothed - raw) ** 2).sum(-1).mean()) < 1.5


def test_short_gap_interpolated_long_gap_invalid(media_dir: Path) -> None:
    name = "sadtalker_WDA_KatieHill_000.mp4"
    frames = list(read_frames(media_dir, name, 50))
    black = np.zeros_like(frames[0])
    short = frames[:15] + [black] * 6 + frames[21:]  # 0.24 s at 25 fps: filled
    track = track_face(iter(short), fps=25.0)
    assert track.valid.all()
    assert not track.detected[15:21].any() and track.detected[:15].all() and track.detected[21:].all()
    mid = track.landmarks[18]
    lo = np.minimum(track.landmarks[14], track.landmarks[21]) - 1.0
    hi = np.maximum(track.landmarks[14], track.landmarks[21]) + 1.0
    assert ((mid >= lo) & (mid <= hi)).mean() > 0.99

    long = frames[:15] + [black] * 20 + frames[35:]  # 0.8 s: passed through untouched
    track = track_face(iter(long), fps=25.0)
    assert track.valid[:15].all() and track.valid[35:].all()
    assert not track.valid[15:35].any()
    assert np.isnan(track.landmarks[15:35]).all()
    assert track.detected[35:].all(), "the face must be found again after the gap"


def test_faceless_clip_is_all_invalid(media_dir: Path) -> None:
    frames = read_frames(media_dir, FACELESS_CLIP, 50)
    track = track_face(iter(frames), fps=clip_fps(media_dir, FACELESS_CLIP))
    assert len(track) == 50
    assert not track.valid.any() and not track.detected.any()
    assert np.isnan(track.landmarks).all()
    assert track_face(iter([])).valid.shape == (0,)


def _centre(track: FaceTrack) -> np.ndarray:
    return np.nanmean(track.landmarks[:, :, :2], axis=(0, 1))


def test_face_index_and_bbox_hint_choose_faces(media_dir: Path) -> None:
    frames = read_frames(media_dir, MULTI_FACE_CLIP, 12, start=600)
    tracks = [track_face(iter(frames), face_index=i, fps=30.0) for i in range(3)]
    for track in tracks:
        assert track.valid.all()
    centres = [_centre(t) for t in tracks]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(centres[i] - centres[j]) > 200
    # Faces sit side by side near x ≈ 450, 820 and 1210 px: a hint on each picks that face.
    for x0 in (370, 750, 1140):
        hinted = track_face(iter(frames), bbox=(x0, 420, x0 + 150, 580), fps=30.0)
        assert hinted.valid.all()
        cx = _centre(hinted)[0]
        assert x0 < cx < x0 + 150
    # Face stays the same over time: no jump between neighbours.
    for track in tracks:
        xs = np.nanmean(track.landmarks[:, :, 0], axis=1)
        assert np.ptp(xs) < 30
    assert not track_face(iter(frames), face_index=5, fps=30.0).valid.any()
    with pytest.raises(ValueError, match="not both"):
        track_face(iter(frames), face_index=0, bbox=(0, 0, 1, 1))


def test_save_load_round_trip(media_dir: Path, tmp_path: Path) -> None:
    track = tracked(media_dir, "deepavsr_00001.mp4", TALKING["deepavsr_00001.mp4"])
    track.save(tmp_path / "track.npz")
    again = FaceTrack.load(tmp_path / "track.npz")
    assert np.array_equal(again.landmarks, track.landmarks, equal_nan=True)
    assert np.array_equal(again.raw, track.raw, equal_nan=True)
    assert np.array_equal(again.valid, track.valid) and np.array_equal(again.detected, track.detected)
    assert again.fps == track.fps and again.frame_size == track.frame_size == (160, 160)


def test_progress_is_reported(media_dir: Path) -> None:
    seen: list[int] = []
    track_face(iter(read_frames(media_dir, "deepavsr_00001.mp4", 5)), progress=seen.append)
    assert seen == [1, 2, 3, 4, 5]


def test_fill_gaps_rules() -> None:
    t = 22
    raw = np.arange(t, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    detected = np.ones(t, bool)
    detected[[0, 1]] = False  # leading gap: held
    detected[5:7] = False  # short interior gap: linear
    detected[10:16] = False  # long gap: invalid
    detected[17] = False  # leaves a 1-frame island at 16 → dropped, merges into the long gap
    raw[~detected] = np.nan
    filled, valid = fill_gaps(raw, detected, max_gap=4)
    assert valid[:10].all() and not valid[10:18].any() and valid[18:].all()
    assert np.allclose(filled[0], 2) and np.allclose(filled[1], 2)
    assert np.allclose(filled[5:7, 0, 0], [5, 6])
    assert np.isnan(filled[10:18]).all()
    assert np.array_equal(filled[valid & detected], raw[valid & detected])


def test_smooth_keeps_linear_motion_and_reduces_noise() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(100, dtype=np.float32)
    line = (3.0 * t)[:, None, None] * np.ones((1, 4, 3), np.float32)
    valid = np.ones(100, bool)
    valid[50:55] = False
    out = smooth(line, valid, sigma=2.0)
    assert np.allclose(out[valid], line[valid], atol=1e-3), (
        "a straight trajectory must not be bent or delayed"
    )
    noisy = rng.normal(size=(100, 4, 3)).astype(np.float32)
    assert smooth(noisy, np.ones(100, bool), 2.0)[10:-10].std() < 0.4 * noisy.std()
