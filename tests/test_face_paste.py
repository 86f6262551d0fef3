"""paste_back on real frames: unmodified crops reproduce the frame; no box, seam or ghost; no face → copy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stylelipsync.face.crop import invert, similarity_scale, warp_landmarks, warp_points, warp_to_crop
from stylelipsync.face.landmarks import LIPS_OUTER
from stylelipsync.face.mask import PoseMasker
from stylelipsync.face.paste import blend_weight, color_offset, paste_back, region_box, seam_color_offset
from test_face_common import TALKING, model_and_crops, read_frames, tracked

# Faces smaller than the crop (upsampled), and larger (the crop loses detail).
CLIPS = [
    "styletalk_KristiNoem.mp4",
    "sadtalker_WDA_KatieHill_000.mp4",
    "latentsync_demo1_video.mp4",
    "vrt_face_2.mp4",
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def setup(media_dir: Path, name: str, t: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frame t, its crop matrix, crop and region mask."""
    track = tracked(media_dir, name, TALKING[name])
    model, crops = model_and_crops(media_dir, name, TALKING[name])
    frame = read_frames(media_dir, name, TALKING[name])[t]
    m = crops[t]
    mask = PoseMasker(model)(warp_landmarks(track.landmarks[t], m))
    return frame, m, warp_to_crop(frame, m), mask


def face_box(media_dir: Path, name: str, t: int = 10) -> tuple[slice, slice]:
    box = tracked(media_dir, name, TALKING[name]).box(t)
    assert box is not None
    x0, y0, x1, y1 = np.round(box).astype(int)
    return slice(y0, y1), slice(x0, x1)


@pytest.mark.parametrize("name", CLIPS)
def test_unmodified_crop_reproduces_frame(media_dir: Path, name: str) -> None:
    frame, m, crop, mask = setup(media_dir, name)
    box = face_box(media_dir, name)
    out = paste_back(frame, crop, m, mask)
    plain = paste_back(frame, crop, m, mask, restore_detail=False)
    p_out, p_plain = psnr(out[box], frame[box]), psnr(plain[box], frame[box])
    print(f"\n{name}: crop scale {similarity_scale(m):.2f}, PSNR in face box {p_out:.1f} dB")
    print(f"  without detail restoration {p_plain:.1f} dB")
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert p_out >= 40.0
    # These faces are all larger than the crop (scale 0.46–0.95), so the plain 256² round trip blurs them a
    # little (measured 39.7–52 dB); detail restoration is what makes the copy exact.
    assert similarity_scale(m) < 1.0 and p_plain >= 37.0


def test_upsampled_face_round_trip_is_near_lossless(media_dir: Path) -> None:
    """A face smaller than the crop is upsampled into it, so even without detail restoration pasting the
    unmodified crop back gives the frame again."""
    frame, m, _, mask = setup(media_dir, "styletalk_KristiNoem.mp4")
    small = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
    m_small = m.copy()
    m_small[:, :2] *= 2.0  # small-frame pixels → full-frame pixels → crop
    assert similarity_scale(m_small) > 1.5
    crop = warp_to_crop(small, m_small)
    plain = paste_back(small, crop, m_small, mask, restore_detail=False, color_match=False)
    y, x = face_box(media_dir, "styletalk_KristiNoem.mp4")
    box = (slice(y.start // 2, y.stop // 2), slice(x.start // 2, x.stop // 2))
    changed = np.abs(plain.astype(int) - small.astype(int)).max(axis=2) > 0
    assert changed[box].mean() > 0.05  # the crop really was pasted back
    assert psnr(plain[box], small[box]) >= 40.0  # measured 41.7 dB


def test_only_the_soft_lower_face_region_changes(media_dir: Path) -> None:
    name = "sadtalker_WDA_KatieHill_000.mp4"
    frame, m, crop, mask = setup(media_dir, name)
    generated = np.full_like(crop, (40, 200, 60))
    out = paste_back(frame, generated, m, mask, color_match=False)
    changed = np.abs(out.astype(int) - frame.astype(int)).max(axis=2) > 0
    alpha = blend_weight(mask)
    support = (alpha > 0).astype(np.uint8)
    support = cv2.warpAffine(support, invert(m), frame.shape[1::-1], flags=cv2.INTER_NEAREST)
    support = cv2.dilate(support, np.ones((5, 5), np.uint8))
    assert changed.any() and not (changed & (support == 0)).any()
    # No box: along the crop square's outline the frame is (nearly) untouched, although the region mask
    # reaches the bottom of the crop and the pasted colour is far from the skin.
    corners = warp_points(np.array([[0, 0], [256, 0], [256, 256], [0, 256]], float), invert(m))
    outline = np.zeros(frame.shape[:2], np.uint8)
    cv2.polylines(outline, [np.round(corners).astype(np.int32)], True, 1, 1)
    assert (mask[-12:] > 0).any()
    diff = np.abs(out.astype(int) - frame.astype(int)).max(axis=2)
    assert diff[outline > 0].max() <= 3
    # The lips are replaced, the eyes are not.
    track = tracked(media_dir, name, TALKING[name])
    lips = np.round(track.landmarks[10][list(LIPS_OUTER), :2]).astype(int)
    assert np.abs(out[lips[:, 1], lips[:, 0]].astype(int) - (40, 200, 60)).max() <= 2
    eyes = np.round(track.landmarks[10][[33, 263, 168], :2]).astype(int)
    assert np.array_equal(out[eyes[:, 1], eyes[:, 0]], frame[eyes[:, 1], eyes[:, 0]])


def test_feather_has_no_hard_edge(media_dir: Path) -> None:
    mask = setup(media_dir, "styletalk_KristiNoem.mp4")[3]
    alpha = blend_weight(mask)
    assert alpha.max() == 1.0 and alpha.min() == 0.0
    assert np.abs(np.diff(alpha, axis=0)).max() < 0.15 and np.abs(np.diff(alpha, axis=1)).max() < 0.15
    assert alpha[0].max() == 0  # faded out at the crop border
    assert alpha[-1].max() == 0 and alpha[:, 0].max() == 0 and alpha[:, -1].max() == 0


def test_color_match_hides_a_colour_shift(media_dir: Path) -> None:
    name = "sadtalker_WDA_KatieHill_000.mp4"
    frame, m, crop, mask = setup(media_dir, name)
    shifted = np.clip(crop.astype(int) + np.array([25, -10, 5]), 0, 255).astype(np.uint8)
    box = face_box(media_dir, name)
    matched = paste_back(frame, shifted, m, mask, restore_detail=False)
    raw = paste_back(frame, shifted, m, mask, color_match=False, restore_detail=False)
    err_matched = np.abs(matched[box].astype(float) - frame[box]).mean()
    err_raw = np.abs(raw[box].astype(float) - frame[box]).mean()
    assert err_matched < 0.3 * err_raw


def test_seam_color_offset_is_color_offset_on_a_float_mouth(media_dir: Path) -> None:
    # The bank's faster colour match must give the same field as paste_back's, from a float image; on a
    # real crop with a lighting change that varies across the face.
    name = "sadtalker_WDA_KatieHill_000.mp4"
    _, _, crop, mask = setup(media_dir, name)
    alpha = blend_weight(mask)
    across = np.linspace(-20.0, 30.0, crop.shape[1], dtype=np.float32)
    ramp = across[None, :, None] * np.array([1.0, 0.5, -0.3])
    lit = np.clip(np.rint(crop + ramp), 0, 255).astype(np.uint8)
    expected = color_offset(lit, crop, alpha)
    assert np.abs(expected).max() > 10  # the test has a field to find
    np.testing.assert_allclose(seam_color_offset(lit.astype(np.float32), crop, alpha), expected, atol=1e-3)
    # No fully regenerated pixels: no offset, like color_offset.
    assert not seam_color_offset(lit.astype(np.float32), crop, alpha * 0.5).any()


def test_region_box_covers_exactly_the_weighted_pixels() -> None:
    alpha = np.zeros((64, 64), np.float32)
    alpha[10:20, 30:41] = 0.3
    alpha[25, 12] = 1e-3
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert region_box(alpha, identity, 200, 200) == (12 - 2, 10 - 2, 41 + 2, 26 + 2)
    assert region_box(np.zeros_like(alpha), identity, 200, 200) is None


def test_changed_mouth_shows_no_ghost_of_the_original(media_dir: Path) -> None:
    """Where the generated crop differs (a new mouth), the frame's own detail is not added back."""
    name = "sadtalker_WDA_KatieHill_000.mp4"
    frame, m, crop, mask = setup(media_dir, name)
    track = tracked(media_dir, name, TALKING[name])
    lips = warp_landmarks(track.landmarks[10], m)[list(LIPS_OUTER), :2]
    generated = crop.copy()
    x0, y0 = np.floor(lips.min(0)).astype(int) - 4
    x1, y1 = np.ceil(lips.max(0)).astype(int) + 4
    generated[y0:y1, x0:x1] = (150, 90, 90)
    out = paste_back(frame, generated, m, mask, color_match=False)
    inner = np.round(track.landmarks[10][list(LIPS_OUTER), :2]).astype(int)
    pixels = out[inner[:, 1], inner[:, 0]].astype(int)
    assert np.abs(pixels - (150, 90, 90)).max() <= 3


def test_no_face_frame_is_copied(media_dir: Path) -> None:
    frame, _, crop, mask = setup(media_dir, "styletalk_KristiNoem.mp4")
    out = paste_back(frame, crop, np.full((2, 3), np.nan), mask)
    assert np.array_equal(out, frame) and out is not frame
    empty = paste_back(frame, crop, np.array([[1.0, 0, 0], [0, 1.0, 0]]), np.zeros_like(mask))
    assert np.array_equal(empty, frame)
