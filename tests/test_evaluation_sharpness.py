"""Mouth sharpness: Laplacian variance, the landmark-driven mouth crop, per-video aggregation, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from stylelipsync.cli import cli
from stylelipsync.evaluation.mouth_opening import EYE_OUTER_CORNERS
from stylelipsync.evaluation.runner import EvalConfig, Evaluator, Job
from stylelipsync.evaluation.sharpness import (
    CROP_SIZE,
    frame_sharpness,
    laplacian_variance,
    mouth_crop,
    video_sharpness,
)
from stylelipsync.face.landmarks import LIPS_OUTER
from stylelipsync.media import VideoReader, VideoWriter, cut_clip

# A frontal 224² VoxCeleb2 talking clip with its own audio (MANIFEST.tsv); the first 2 s are used.
CLIP = "pcavs_Audio_Source_00086.mp4"
SHORT_CLIP = "deepavsr_00006.mp4"  # 0.9 s, 160², for the CLI check


def _pattern(size: int = 320, seed: int = 0) -> np.ndarray:
    """RGB uint8 image with text-like content: a checkerboard and random dark strokes on grey."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    grey = np.where(((yy // 6) + (xx // 6)) % 2 == 0, 170, 90).astype(np.uint8)
    for _ in range(60):
        x, y = rng.integers(0, size, 2)
        w, h = rng.integers(2, 20, 2)
        grey[y : y + h, x : x + w] = rng.integers(0, 255)
    return np.repeat(grey[..., None], 3, axis=2)


def _landmarks(cx: float, cy: float, eyes: float = 100.0, angle: float = 0.0) -> np.ndarray:
    """(478, 3) landmarks: outer eye corners `eyes` px apart above an outer-lip ellipse around (cx, cy)."""
    lm = np.zeros((478, 3), np.float32)
    phi = np.linspace(0, 2 * np.pi, len(LIPS_OUTER), endpoint=False)
    local = {
        i: (0.27 * eyes * np.cos(p), 0.1 * eyes * np.sin(p)) for i, p in zip(LIPS_OUTER, phi, strict=True)
    }
    local[EYE_OUTER_CORNERS[0]] = (-eyes / 2, -0.6 * eyes)
    local[EYE_OUTER_CORNERS[1]] = (eyes / 2, -0.6 * eyes)
    c, s = np.cos(angle), np.sin(angle)
    for i, (x, y) in local.items():
        lm[i, :2] = (cx + c * x - s * y, cy + s * x + c * y)
    return lm


def test_laplacian_variance_drops_with_blur() -> None:
    image = _pattern()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    sharp = laplacian_variance(grey)
    blurred = laplacian_variance(cv2.GaussianBlur(grey, (0, 0), 2.0))
    assert sharp > 20 * blurred > 0
    assert laplacian_variance(np.full((64, 96), 128, np.uint8)) == 0.0
    lm = _landmarks(160, 170)
    crop_sharp = frame_sharpness(image, lm)
    crop_blurred = frame_sharpness(cv2.GaussianBlur(image, (0, 0), 2.0), lm)
    assert crop_sharp > 10 * crop_blurred > 0


def test_crop_follows_the_landmarks() -> None:
    image, lm = _pattern(), _landmarks(160, 170)
    crop = mouth_crop(image, lm)
    assert crop.shape == (CROP_SIZE[1], CROP_SIZE[0]) and crop.dtype == np.float32
    # Same face moved by (37, 23) px in a larger frame: the same crop, hence the same value.
    canvas = np.full((400, 420, 3), 128, np.uint8)
    canvas[23 : 23 + 320, 37 : 37 + 320] = image
    moved = lm.copy()
    moved[:, :2] += (37, 23)
    np.testing.assert_allclose(mouth_crop(canvas, moved), crop, atol=1e-3)
    assert frame_sharpness(canvas, moved) == pytest.approx(frame_sharpness(image, lm), rel=1e-6)
    # Landmarks elsewhere in the same image: another crop.
    assert np.abs(mouth_crop(image, _landmarks(120, 130)) - crop).mean() > 10
    # The face rotated with its landmarks: the crop comes out upright, the value stays close.
    rot = cv2.getRotationMatrix2D((160, 170), -20, 1.0)  # +20° in image coordinates (y down)
    turned = cv2.warpAffine(image, rot, (320, 320), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    turned_lm = _landmarks(160, 170, angle=np.deg2rad(20))
    core = (slice(8, -8), slice(12, -12))  # the corners sample rotated-in border pixels
    diff = np.abs(mouth_crop(turned, turned_lm)[core] - crop[core])
    assert np.median(diff) < 12
    # The face twice as large (landmarks and image): area reduction keeps the value within a third.
    big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    big_lm = lm.copy()
    big_lm[:, :2] = big_lm[:, :2] * 2 + 0.5
    assert frame_sharpness(big, big_lm) == pytest.approx(frame_sharpness(image, lm), rel=0.35)


def test_video_sharpness_skips_frames_without_a_face() -> None:
    sharp, soft = _pattern(seed=1), cv2.GaussianBlur(_pattern(seed=1), (0, 0), 2.0)
    images = [sharp, soft, sharp, sharp, soft, sharp]
    lm = np.repeat(_landmarks(160, 170)[None], len(images), axis=0)
    valid = np.array([True, False, True, True, False, True])
    lm[3] = np.nan  # valid but no landmarks (e.g. a gap-filled frame): skipped too
    res = video_sharpness(enumerate(images), lm, valid)
    assert (res.used, res.considered) == (3, 6)
    assert np.isnan(res.per_frame[[1, 3, 4]]).all()
    assert res.value == pytest.approx(frame_sharpness(sharp, lm[0]))
    stepped = video_sharpness(enumerate(images), lm, valid, frame_step=2)  # frames 0, 2, 4
    assert (stepped.used, stepped.considered) == (2, 3)
    none = video_sharpness(enumerate(images), lm, np.zeros(len(images), bool))
    assert none.used == 0 and np.isnan(none.value)
    # Frames beyond the track (a track shorter than the video) are considered but not used.
    short = video_sharpness(enumerate(images), lm[:2], valid[:2])
    assert (short.used, short.considered) == (1, 6)


# ------------------------------------------------------------------------------------------ real video
@pytest.fixture(scope="module")
def real_and_blurred(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 2 s of a shared talking clip, and the same frames Gaussian-blurred (σ = 2 px), re-encoded."""
    root = tmp_path_factory.mktemp("sharpness")
    real = cut_clip(media_dir / CLIP, root / "real.mp4", 2.0)
    blurred = root / "blurred.mp4"
    with VideoReader(real) as reader, VideoWriter(blurred, reader.fps, reader.width, reader.height) as out:
        for frame in reader:
            out.write(cv2.GaussianBlur(frame.image, (0, 0), 2.0))
    return real, blurred


def test_evaluator_real_clip_sharper_than_blurred(
    real_and_blurred: tuple[Path, Path], tmp_path: Path
) -> None:
    real, blurred = real_and_blurred
    evaluator = Evaluator(EvalConfig(metrics=("sharpness",), cache_dir=tmp_path / "cache"))
    assert evaluator.columns() == ["mouth_sharpness"]
    a = evaluator.evaluate(Job("real", real))
    b = evaluator.evaluate(Job("blurred", blurred))
    sharp, soft = a.values["mouth_sharpness"], b.values["mouth_sharpness"]
    assert sharp is not None and soft is not None
    assert sharp > 3 * soft > 0
    assert not a.notes and not b.notes
    stepped = Evaluator(EvalConfig(metrics=("sharpness",), cache_dir=tmp_path / "cache", frame_step=5))
    value = stepped.evaluate(Job("real", real)).values["mouth_sharpness"]
    assert value == pytest.approx(sharp, rel=0.25)


def test_cli_accepts_sharpness(media_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    clip = str(media_dir / SHORT_CLIP)
    args = ["evaluate", "-g", clip, "-m", "sharpness", "--cache-dir", str(tmp_path), "-o", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "mouth_sharpness" in result.output
    doc = json.loads(out.read_text())
    assert doc["columns"] == ["mouth_sharpness"]
    assert doc["videos"][0]["values"]["mouth_sharpness"] > 0
