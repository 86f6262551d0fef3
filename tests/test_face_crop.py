"""Crop transforms on real tracks: exact inverse, eye/nose alignment, framing, no mouth dependence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stylelipsync.face.crop import (
    DEFAULT_FRAMING,
    crop_transform,
    invert,
    similarity_scale,
    warp_image,
    warp_landmarks,
    warp_points,
    warp_to_crop,
)
from stylelipsync.face.landmarks import CHIN, FACE_OVAL, LEFT_EYE, LIPS_INNER, LIPS_OUTER, RIGHT_EYE, RIGID
from test_face_common import STILL_CLIP, TALKING, model_and_crops, read_frames, tracked
from test_face_track import noise_px

CLIPS = ["sadtalker_WDA_KatieHill_000.mp4", "latentsync_demo1_video.mp4", "pcavs_Pose_Source_517600055.mp4"]


def open_mouth(landmarks: np.ndarray, drop: float) -> np.ndarray:
    """Synthetic jaw opening on frame landmarks: every point below the upper lip moves down along the face's
    down direction, by up to `drop` pixels at the chin (0 at the upper lip), rigid points untouched."""
    lm = landmarks.astype(np.float64).copy()
    right, left = lm[list(RIGHT_EYE)].mean(0)[:2], lm[list(LEFT_EYE)].mean(0)[:2]
    across = (left - right) / np.linalg.norm(left - right)
    down = np.array([-across[1], across[0]])
    depth = (lm[:, :2] - lm[0, :2]) @ down  # below the upper-lip top (#0)
    chin = (lm[CHIN, :2] - lm[0, :2]) @ down
    w = np.clip(depth / chin, 0.0, 1.0)
    w[list(RIGID)] = 0.0
    lm[:, :2] += (drop * w)[:, None] * down
    return lm.astype(np.float32)


@pytest.mark.parametrize("name", CLIPS)
def test_round_trip_and_alignment(media_dir: Path, name: str) -> None:
    track = tracked(media_dir, name, TALKING[name])
    _, crops = model_and_crops(media_dir, name, TALKING[name])
    size = 256
    for t in range(len(track)):
        m = crops[t]
        lm = track.landmarks[t]
        crop_pts = warp_points(lm, m)
        back = warp_points(crop_pts, invert(m))
        assert np.abs(back - lm[:, :2]).max() < 1e-3  # crop → frame inverse: far below 1 px
        right = crop_pts[list(RIGHT_EYE)].mean(0)
        left = crop_pts[list(LEFT_EYE)].mean(0)
        assert abs(right[1] - left[1]) < 1e-3, "roll removed: the eye line is horizontal in the crop"
        assert abs((right[1] + left[1]) / 2 - DEFAULT_FRAMING.eye_line * size) < 1e-3
        eye_dist = np.linalg.norm(
            warp_landmarks(lm[list(LEFT_EYE)].mean(0, keepdims=True), m)
            - warp_landmarks(lm[list(RIGHT_EYE)].mean(0, keepdims=True), m)
        )
        assert abs(eye_dist - size / DEFAULT_FRAMING.side) < 1e-2  # 3-D eye distance sets the scale
        # Framing: the whole face inside, chin in the lower part but above the bottom edge.
        oval = crop_pts[list(FACE_OVAL)]
        assert (oval > 0).all() and (oval < size).all()
        assert 0.72 * size < crop_pts[CHIN, 1] < 0.92 * size
        assert 0.3 * size < crop_pts[:, 0].mean() < 0.7 * size


def test_crop_ignores_mouth_and_jaw(media_dir: Path) -> None:
    name = CLIPS[0]
    lm = tracked(media_dir, name, TALKING[name]).landmarks[10]
    opened = open_mouth(lm, drop=25.0)
    moved = np.linalg.norm(opened[:, :2] - lm[:, :2], axis=1)
    assert moved[list(LIPS_INNER) + list(LIPS_OUTER) + [CHIN]].max() > 20  # the mouth really moved
    assert np.array_equal(crop_transform(lm), crop_transform(opened))


def test_crop_window_is_steady(media_dir: Path) -> None:
    """The crop window's corners (in 256² crop pixels) jitter far less than a pixel on a still head."""
    _, crops = model_and_crops(media_dir, STILL_CLIP, TALKING[STILL_CLIP])
    corners = np.array([[0, 0], [256, 0], [0, 256], [256, 256]], dtype=np.float64)
    traj = np.stack([warp_points(corners, invert(m)) * similarity_scale(m) for m in crops])
    assert noise_px(traj) < 0.1


def test_warp_landmarks_scales_depth() -> None:
    m = np.array([[0.0, -2.0, 10.0], [2.0, 0.0, 5.0]])
    pts = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    out = warp_landmarks(pts, m)
    assert np.allclose(out, [[6.0, 7.0, 6.0]])
    assert np.allclose(warp_points(out, invert(m)), pts[:, :2])


def test_downscaling_warp_is_antialiased(media_dir: Path) -> None:
    frame = read_frames(media_dir, "vrt_face_2.mp4", 1)[0]
    m = np.array([[0.25, 0.0, 0.0], [0.0, 0.25, 0.0]])
    ours = warp_image(frame, m, (211, 211)).astype(np.float64)
    area = cv2.resize(frame, (211, 211), interpolation=cv2.INTER_AREA).astype(np.float64)
    naive = cv2.warpAffine(frame, m, (211, 211), flags=cv2.INTER_LINEAR).astype(np.float64)
    err_ours = np.abs(ours - area)[4:-4, 4:-4].mean()
    err_naive = np.abs(naive - area)[4:-4, 4:-4].mean()
    assert err_ours < 0.6 * err_naive


def test_warp_to_crop_shape(media_dir: Path) -> None:
    name = CLIPS[1]
    _, crops = model_and_crops(media_dir, name, TALKING[name])
    frame = read_frames(media_dir, name, TALKING[name])[0]
    crop = warp_to_crop(frame, crops[0], 256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    assert crop.std() > 10
