"""Pose-aware mask on real frames: area, shape, no mouth-state leak, pose fit accuracy, §3.3 keep-mask."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from stylelipsync.face.crop import warp_landmarks, warp_points
from stylelipsync.face.geometry import FaceModel, umeyama
from stylelipsync.face.landmarks import (
    CHIN,
    INNER_LIP_BOTTOM,
    INNER_LIP_TOP,
    LIPS_OUTER,
    LOWER_FACE_OVAL,
    NASION,
    PRONASALE,
    RIGID,
    SUBNASALE,
    UPPER_LIP_TOP,
)
from stylelipsync.face.mask import (
    MaskParams,
    PoseMasker,
    keep_mask,
    read_mask,
    template_outline,
    write_mask,
)
from test_face_common import TALKING, model_and_crops, tracked
from test_face_crop import open_mouth

CLIPS = [
    "sadtalker_WDA_KatieHill_000.mp4",
    "latentsync_demo1_video.mp4",
    "pcavs_Pose_Source_517600055.mp4",
    "deepavsr_00001.mp4",
    "vrt_face_2.mp4",
]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


def tracked_model(media_dir: Path, name: str) -> FaceModel:
    """The clip's face shape, estimated from its whole track."""
    return model_and_crops(media_dir, name, TALKING[name])[0]


def crop_landmarks(media_dir: Path, name: str) -> tuple[FaceModel, list[np.ndarray], list[np.ndarray]]:
    """Shape, per-frame crop-space smoothed landmarks and per-frame crop-space raw landmarks of a clip."""
    track = tracked(media_dir, name, TALKING[name])
    model, crops = model_and_crops(media_dir, name, TALKING[name])
    smooth = [warp_landmarks(track.landmarks[t], crops[t]) for t in range(len(track))]
    raw = [warp_landmarks(track.raw[t], crops[t]) for t in range(len(track))]
    return model, smooth, raw


@pytest.mark.parametrize("name", CLIPS)
def test_mask_area_and_coverage(media_dir: Path, name: str) -> None:
    model, smooth, raw = crop_landmarks(media_dir, name)
    masker = PoseMasker(model)
    areas = []
    for lm, lm_raw in zip(smooth, raw, strict=True):
        mask = masker(lm)
        assert mask.shape == (256, 256) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        areas.append((mask > 0).mean())
        n, _ = cv2.connectedComponents(mask)
        assert n == 2, "one solid region"

        def inside(i: int, lm_: np.ndarray = lm_raw, mask_: np.ndarray = mask) -> bool:
            x, y = np.round(lm_[i, :2]).astype(int)
            return 0 <= x < 256 and 0 <= y < 256 and mask_[y, x] > 0

        # Lower face in, eyes and nose bridge out, top edge between the nose tip and the upper lip.
        assert all(inside(i) for i in LIPS_OUTER)
        assert inside(CHIN) and inside(UPPER_LIP_TOP)
        assert not any(inside(i) for i in (*RIGID, NASION, PRONASALE))
    areas = np.array(areas)
    print(f"\n{name}: mask area {100 * areas.min():.1f}–{100 * areas.max():.1f} % of the 256² crop")
    assert areas.min() >= 0.12 and areas.max() <= 0.30


def test_mask_top_edge_is_at_the_nose_base(media_dir: Path) -> None:
    model, smooth, _ = crop_landmarks(media_dir, CLIPS[0])
    masker = PoseMasker(model)
    for lm in smooth[::10]:
        mask = masker(lm)
        x = round(float(lm[SUBNASALE, 0]))
        top = int(np.argmax(mask[:, x] > 0))
        assert lm[PRONASALE, 1] < top < lm[UPPER_LIP_TOP, 1]
        assert abs(top - lm[SUBNASALE, 1]) < 0.5 * (lm[UPPER_LIP_TOP, 1] - lm[PRONASALE, 1])


def test_template_follows_spec_geometry(media_dir: Path) -> None:
    """Model heights are ordered like MediaPipe's canonical model; the cut and chin extension are as set."""
    model, _, _ = crop_landmarks(media_dir, CLIPS[0])
    y = model.vertices[:, 1]
    order = [PRONASALE, 1, SUBNASALE, UPPER_LIP_TOP, INNER_LIP_TOP, INNER_LIP_BOTTOM, 17, CHIN]
    assert all(y[a] > y[b] for a, b in itertools.pairwise(order))
    params = MaskParams()
    outline = template_outline(model, params)
    y_cut = outline[np.abs(outline[:, 0]) < 0.6, 1].max()  # the top edge at the midline (above the chin)
    assert 1.0 < y[PRONASALE] - y_cut < 1.7  # spec: cut 1.0–1.6 cm under the pronasale (−1.5…−2.1 cm)
    assert outline[:, 1].min() < y[CHIN] - 0.9 * params.chin_drop_cm  # chin extended along −y
    horns = outline[[0, params.top_samples - 1], 1]
    assert (horns > y_cut + 0.9 * params.horn_rise_cm).all()


def test_mask_ignores_synthetic_mouth_opening(media_dir: Path) -> None:
    model, smooth, _ = crop_landmarks(media_dir, CLIPS[0])
    masker = PoseMasker(model)
    for lm in smooth[::7]:
        opened = open_mouth(lm, drop=20.0)
        assert np.linalg.norm(opened[CHIN, :2] - lm[CHIN, :2]) > 19
        assert iou(masker(lm), masker(opened)) >= 0.95
        # The test has teeth: a mask drawn through the detected jaw line would change a lot.
        naive_closed = np.zeros((256, 256), np.uint8)
        naive_open = np.zeros((256, 256), np.uint8)
        cv2.fillPoly(naive_closed, [np.round(lm[list(LOWER_FACE_OVAL), :2]).astype(np.int32)], 255)
        cv2.fillPoly(naive_open, [np.round(opened[list(LOWER_FACE_OVAL), :2]).astype(np.int32)], 255)
        assert iou(naive_closed, naive_open) < 0.9


@pytest.mark.parametrize("name", ["vrt_face_2.mp4", "styletalk_KristiNoem.mp4"])
def test_mask_same_for_open_and_closed_mouth_at_similar_pose(media_dir: Path, name: str) -> None:
    """Real frames: an open-mouth and a closed-mouth frame whose rigid points (eyes, nose, forehead) are at
    the same place in the crop (RMS < 0.5 px) get the same mask, and no less alike than two closed-mouth
    frames in the same situation (no systematic mouth-state difference)."""
    _, smooth, raw = crop_landmarks(media_dir, name)
    masker = PoseMasker(tracked_model(media_dir, name))
    rigid = list(RIGID)
    gap = np.array([np.linalg.norm(r[INNER_LIP_TOP, :2] - r[INNER_LIP_BOTTOM, :2]) for r in raw])
    open_frames = np.flatnonzero(gap >= 12.0)  # inner lips ≥ 12 px apart at 256²
    closed_frames = np.flatnonzero(gap <= 5.0)
    assert len(open_frames) >= 3 and len(closed_frames) >= 3, "need clearly open and closed frames"

    def close(i: int, j: int) -> bool:
        return float(np.sqrt(((smooth[i][rigid, :2] - smooth[j][rigid, :2]) ** 2).sum(1).mean())) < 0.5

    masks = {t: masker(smooth[t]) for t in set(open_frames) | set(closed_frames)}
    mixed = [iou(masks[i], masks[j]) for i in open_frames for j in closed_frames if close(i, j)]
    same = [iou(masks[i], masks[j]) for i in closed_frames for j in closed_frames if i < j and close(i, j)]
    assert len(mixed) >= 5 and len(same) >= 5
    print(f"\n{name}: open vs closed mouth at the same pose: {len(mixed)} pairs, IoU min {min(mixed):.3f}")
    print(f"  mean {np.mean(mixed):.3f} (closed vs closed: min {min(same):.3f}, mean {np.mean(same):.3f})")
    assert min(mixed) >= 0.95
    assert np.mean(mixed) >= np.mean(same) - 0.01


@pytest.mark.parametrize("name", CLIPS)
def test_rigid_points_reprojected_within_2px(media_dir: Path, name: str) -> None:
    """Spec §3.5: eye corners, nasion, nose bridge and pronasale projected by the fitted pose land within
    ~2 px of the landmarks at 256² (those the pose was fitted on; raw detections are reported too)."""
    model, smooth, raw = crop_landmarks(media_dir, name)
    anchors = [33, 263, 168, 6, 4]
    rigid = list(RIGID)
    err_rigid, err_anchor, err_raw = [], [], []
    for lm, lm_raw in zip(smooth, raw, strict=True):
        pose = model.fit(lm)
        err_rigid.append(np.linalg.norm(pose.project(model.vertices[rigid]) - lm[rigid, :2], axis=1))
        projected = pose.project(model.vertices[anchors])
        err_anchor.append(np.linalg.norm(projected - lm[anchors, :2], axis=1))
        err_raw.append(np.linalg.norm(projected - lm_raw[anchors, :2], axis=1))
    e_rigid, e_anchor, e_raw = (np.concatenate(e) for e in (err_rigid, err_anchor, err_raw))
    a95, r95 = np.quantile(e_anchor, 0.95), np.quantile(e_raw, 0.95)
    print(f"\n{name}: reprojection at 256², anchors mean {e_anchor.mean():.2f} p95 {a95:.2f}")
    print(f"  max {e_anchor.max():.2f} px; all rigid points mean {e_rigid.mean():.2f} px")
    print(f"  vs raw detections mean {e_raw.mean():.2f} p95 {r95:.2f} px")
    assert e_anchor.mean() < 1.0 and np.quantile(e_anchor, 0.95) < 2.0 and e_anchor.max() < 6.0
    assert e_rigid.mean() < 1.0 and np.quantile(e_rigid, 0.95) < 2.0
    assert e_raw.mean() < 2.0


def test_pose_fit_recovers_a_known_pose(media_dir: Path) -> None:
    model, _, _ = crop_landmarks(media_dir, CLIPS[0])
    angle = np.radians(25.0)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    viewer = 9.0 * model.vertices @ rot.T + np.array([128.0, -120.0, 0.0])
    landmarks = np.concatenate([viewer * [1, -1, -1], np.zeros((10, 3))], axis=0)
    pose = model.fit(landmarks)
    assert np.allclose(pose.rotation, rot, atol=1e-6) and abs(pose.scale - 9.0) < 1e-6
    assert abs(pose.angles()[0] - 25.0) < 1e-4
    s, r, t = umeyama(model.vertices, viewer)
    assert abs(s - 9.0) < 1e-9 and np.allclose(r, rot) and np.allclose(t, [128.0, -120.0, 0.0])


def test_nan_landmarks_give_empty_mask(media_dir: Path) -> None:
    model, _, _ = crop_landmarks(media_dir, CLIPS[0])
    assert not PoseMasker(model)(np.full((478, 3), np.nan, np.float32)).any()


def test_keep_mask_matches_official_processing() -> None:
    """§3.3 on a 3-channel uint8 mask: dilate 3×3 ones ×9, invert, blur 21×21 (σ 3.5, OpenCV's rule), /255."""
    rng = np.random.default_rng(1)
    mask = np.zeros((256, 256), np.uint8)
    cv2.fillPoly(mask, [rng.integers(60, 200, size=(7, 2)).astype(np.int32)], 255)
    three = np.repeat(mask[..., None], 3, axis=2)
    dilated = cv2.dilate(three, np.ones((3, 3), np.uint8), iterations=9)
    official = cv2.GaussianBlur(255 - dilated, (21, 21), 0) / 255.0
    ours = keep_mask(mask)
    assert ours.dtype == np.float32 and ours.shape == (256, 256)
    assert np.abs(ours - official[..., 0]).max() < 1e-6
    assert np.array_equal(keep_mask(three), ours)
    explicit_sigma = cv2.GaussianBlur(255 - dilated, (21, 21), 3.5) / 255.0
    assert np.abs(explicit_sigma - official).max() <= 1 / 255 + 1e-9
    dot = np.zeros((64, 64), np.uint8)
    dot[32, 32] = 255
    k = keep_mask(dot)
    assert k[32, 32] == 0.0 and k[32, 32 + 20] == 1.0  # grown by 9 px, blurred by ~10 px
    assert 0.0 < k[32, 32 + 11] < 1.0


def test_mask_file_round_trip(tmp_path: Path, media_dir: Path) -> None:
    model, smooth, _ = crop_landmarks(media_dir, CLIPS[0])
    mask = PoseMasker(model)(smooth[0])
    write_mask(tmp_path / "00000_front_mask.png", mask)
    assert np.array_equal(read_mask(tmp_path / "00000_front_mask.png"), mask)
    write_mask(tmp_path / "00000_front_mask.jpg", mask)
    jpg = read_mask(tmp_path / "00000_front_mask.jpg")
    assert jpg.shape == (256, 256) and iou(jpg > 127, mask) > 0.99
    assert np.abs(keep_mask(jpg) - keep_mask(mask)).max() < 0.05
    with pytest.raises(FileNotFoundError):
        read_mask(tmp_path / "missing.jpg")


def test_crop_space_points_helper_consistency(media_dir: Path) -> None:
    """warp_landmarks keeps x, y identical to warp_points (the mask and the crop agree on coordinates)."""
    track = tracked(media_dir, CLIPS[0], TALKING[CLIPS[0]])
    _, crops = model_and_crops(media_dir, CLIPS[0], TALKING[CLIPS[0]])
    lm = track.landmarks[0]
    assert np.allclose(warp_landmarks(lm, crops[0])[:, :2], warp_points(lm, crops[0]), atol=1e-3)
