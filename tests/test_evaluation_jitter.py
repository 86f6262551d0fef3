"""Mouth jitter (evaluation/jitter.py) on synthetic landmark tracks with known answers, and in `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import test_evaluation_common as common
from stylelipsync.cli import cli
from stylelipsync.evaluation.jitter import MOUTH_POINTS, jitter_per_frame, mouth_jitter, mouth_position
from stylelipsync.evaluation.silence_leak import mouth_motion

EYE_DISTANCE = 40.0


def _face(frames: int, seed: int = 0) -> np.ndarray:
    """(T, 478, 3) still face: eye corners 40 px apart on a horizontal line, other points fixed at random."""
    rng = np.random.default_rng(seed)
    one = rng.uniform(20, 80, size=(478, 3))
    one[33, :2], one[263, :2] = (30.0, 40.0), (30.0 + EYE_DISTANCE, 40.0)
    return np.repeat(one[None], frames, axis=0)


def _move_mouth(lm: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Shift the mouth points of frame t by offsets[t] (x, y) pixels."""
    out = lm.copy()
    out[:, list(MOUTH_POINTS), :2] += offsets[:, None, :]
    return out


def _similarity(lm: np.ndarray, scale: np.ndarray, angle: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per-frame similarity of the whole face (head motion, zoom, roll)."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2) * scale[:, None, None]
    out = lm.copy()
    out[..., :2] = np.einsum("tij,tnj->tni", rot, lm[..., :2]) + shift[:, None, :]
    return out


def test_still_mouth_has_zero_jitter_whatever_the_head_does() -> None:
    frames = 30
    still = _face(frames)
    assert mouth_jitter(still) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(1)
    head = _similarity(
        still,
        scale=rng.uniform(0.5, 3.0, frames),
        angle=rng.uniform(-0.4, 0.4, frames),
        shift=rng.uniform(-50, 50, (frames, 2)),
    )  # an abruptly moving, zooming, rolling head: the mouth stays put on the face
    assert mouth_jitter(head) == pytest.approx(0.0, abs=1e-9)
    steady = _move_mouth(still, np.stack([np.arange(frames) * 0.5, np.zeros(frames)], -1))
    assert mouth_jitter(steady) == pytest.approx(0.0, abs=1e-9)  # constant velocity: no second difference


def test_known_jitter_in_eye_distances() -> None:
    frames = 20
    d = 2.0  # mouth alternates between 0 and 2 px to the right: |p[t+1] − 2p[t] + p[t−1]| = 2d every frame
    offsets = np.stack([(np.arange(frames) % 2) * d, np.zeros(frames)], -1)
    lm = _move_mouth(_face(frames), offsets)
    assert mouth_jitter(lm) == pytest.approx(2 * d / EYE_DISTANCE)
    per_frame = jitter_per_frame(lm)
    assert np.isnan(per_frame[[0, -1]]).all() and np.allclose(per_frame[1:-1], 2 * d / EYE_DISTANCE)
    scaled = _similarity(lm, np.full(frames, 3.0), np.full(frames, 0.3), np.zeros((frames, 2)))
    assert mouth_jitter(scaled) == pytest.approx(2 * d / EYE_DISTANCE)  # same face, 3× larger and rolled
    pos = mouth_position(lm)
    assert pos[1, 0] - pos[0, 0] == pytest.approx(d / EYE_DISTANCE) and pos[1, 1] == pytest.approx(pos[0, 1])


def test_jumping_mouth_scores_above_smooth_one() -> None:
    frames = 100
    t = np.arange(frames)
    speech = np.stack([np.zeros(frames), 3.0 * np.sin(2 * np.pi * 2 * t / 25)], -1)  # 2 Hz opening, 25 fps
    smooth = _move_mouth(_face(frames), speech)
    offsets = np.random.default_rng(3).normal(scale=1.5, size=(frames // 4 + 1, 2))
    jumping = _move_mouth(
        _face(frames), speech + np.repeat(offsets, 4, axis=0)[:frames]
    )  # new offset every 4
    assert mouth_jitter(jumping) > 1.3 * mouth_jitter(smooth) > 0


def test_invalid_frames_are_left_out_and_a_glitch_barely_counts() -> None:
    frames = 40
    offsets = np.stack([(np.arange(frames) % 2) * 1.0, np.zeros(frames)], -1)
    lm = _move_mouth(_face(frames), offsets)
    valid = np.ones(frames, dtype=bool)
    valid[10] = False
    lm[10] = np.nan
    per_frame = jitter_per_frame(lm, valid)
    assert np.isnan(per_frame[9:12]).all() and np.isfinite(per_frame[12:-1]).all()
    assert mouth_jitter(lm, valid) == pytest.approx(2 / EYE_DISTANCE)
    glitch = _move_mouth(_face(frames), offsets)
    glitch[20, list(MOUTH_POINTS), :2] += 15.0  # one mis-tracked frame
    assert mouth_jitter(glitch) == pytest.approx(2 / EYE_DISTANCE)
    assert np.isnan(mouth_jitter(lm[:2]))
    assert np.isnan(mouth_jitter(lm[:5], np.array([True, False, True, False, True])))
    with pytest.raises(ValueError, match="478"):
        mouth_jitter(np.zeros((5, 10, 2)))


def test_evaluate_reports_jitter_and_motion(media_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["evaluate", "-g", str(media_dir / "deepavsr_00006.mp4"), "-m", "jitter", "-o", str(out)]
    args += ["--cache-dir", str(common._CACHE)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "mouth_jitter" in result.output and "mouth_motion" in result.output
    doc = json.loads(out.read_text())
    values = doc["videos"][0]["values"]
    track = common.tracked("deepavsr_00006.mp4")
    assert values["mouth_motion"] == pytest.approx(mouth_motion(track))
    assert values["mouth_jitter"] == pytest.approx(mouth_jitter(track.raw, track.detected))
    assert 0.003 < values["mouth_jitter"] < 0.08  # real video: FaceMesh noise plus articulation
    assert doc["columns"] == ["mouth_jitter", "mouth_motion"]
