"""A small synthetic dataset in the preprocess format, for tests and for smoke-testing a training install.

Each "person" is a coloured face drawing whose mouth opens with the loudness of its own synthetic speech
(noise bursts), so the audio–mouth relation is real and learnable, and nothing needs MediaPipe or media files.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from stylelipsync.audio.mel import log_mel_spectrogram
from stylelipsync.audio.normalization import mel_stats
from stylelipsync.face.landmarks import (
    LEFT_EYE_OUTER,
    LIPS_INNER,
    LIPS_OUTER,
    NUM_LANDMARKS,
    RIGHT_EYE_OUTER,
)
from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.training.preprocess import FPS, SAMPLES_PER_FRAME, write_manifest


def _envelope(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Per-frame loudness in [0, 1]: syllable-like bursts separated by pauses."""
    env = np.zeros(num_frames)
    t = 0
    while t < num_frames:
        length = min(int(rng.integers(3, 9)), num_frames - t)
        env[t : t + length] = np.sin(np.linspace(0, np.pi, length)) * rng.uniform(0.5, 1.0)
        t += length + int(rng.integers(1, 6))
    return env


def write_synthetic_clip(
    root: Path, clip_id: str, person: int, num_frames: int, size: int, rng: np.random.Generator
) -> dict[str, object]:
    """Write one clip directory; returns its meta."""
    env = _envelope(rng, num_frames)
    samples = np.arange(num_frames * SAMPLES_PER_FRAME)
    loud = np.repeat(env, SAMPLES_PER_FRAME)
    carrier = np.sin(2 * np.pi * (180 + 40 * person) * samples / SAMPLE_RATE) + 0.5 * rng.standard_normal(
        len(samples)
    )
    audio = (0.3 * loud * carrier + 0.003 * rng.standard_normal(len(samples))).astype(np.float32)
    mel = log_mel_spectrogram(audio).numpy().astype(np.float32)
    hue = np.array([60 + 50 * (person % 4), 90 + 40 * (person % 3), 200 - 30 * (person % 5)], np.uint8)
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    masks = np.zeros((num_frames, size, size), np.uint8)
    landmarks = np.zeros((num_frames, NUM_LANDMARKS, 3), np.float32)
    s = size / 64.0
    for t in range(num_frames):
        img = np.full((size, size, 3), hue // 3, np.uint8)
        cx, cy = size / 2 + s * rng.uniform(-0.5, 0.5), size / 2
        cv2.ellipse(img, (int(cx), int(cy)), (int(20 * s), int(26 * s)), 0, 0, 360, hue.tolist(), -1)
        for ex in (-8, 8):
            cv2.circle(img, (int(cx + ex * s), int(cy - 8 * s)), max(1, int(3 * s)), (20, 20, 20), -1)
        mouth_h = 1 + 7 * env[t]
        cv2.ellipse(
            img,
            (int(cx), int(cy + 12 * s)),
            (int(8 * s), max(1, int(mouth_h * s))),
            0,
            0,
            360,
            (120, 20, 30),
            -1,
        )
        frames[t] = img
        poly = np.array(
            [[cx - 20 * s, cy], [cx + 20 * s, cy], [cx + 20 * s, size - 1], [cx - 20 * s, size - 1]]
        )
        cv2.fillPoly(masks[t], [poly.astype(np.int32)], (255,))
        angles = np.linspace(0, 2 * np.pi, len(LIPS_OUTER), endpoint=False)
        lips = np.stack([cx + 8 * s * np.cos(angles), cy + 12 * s + mouth_h * s * np.sin(angles)], axis=1)
        landmarks[t, list(LIPS_OUTER), :2] = lips
        # Inner lips and outer eye corners too: the mouth opening (inner-lip gap over eye distance) is the
        # audio pre-training's target and the evaluation's; without them it is 0 in every frame.
        inner = np.stack(
            [cx + 6 * s * np.cos(angles), cy + 12 * s + (mouth_h - 1) * s * np.sin(angles)], axis=1
        )
        landmarks[t, list(LIPS_INNER), :2] = inner
        landmarks[t, [RIGHT_EYE_OUTER, LEFT_EYE_OUTER], :2] = [
            [cx - 11 * s, cy - 8 * s],
            [cx + 11 * s, cy - 8 * s],
        ]
    mean, std = mel_stats(mel)
    meta = {
        "fps": FPS,
        "num_frames": num_frames,
        "person": f"person{person}",
        "source": f"synthetic:{clip_id}",
        "size": size,
        "num_valid": num_frames,
        "mel_mean": mean.tolist(),
        "mel_std": std.tolist(),
    }
    clip_dir = root / "clips" / clip_id
    clip_dir.mkdir(parents=True, exist_ok=True)
    arrays = {
        "frames": frames,
        "masks": masks,
        "landmarks": landmarks,
        "valid": np.ones(num_frames, bool),
        "audio": audio,
        "mel": mel,
    }
    for name, arr in arrays.items():
        np.save(clip_dir / f"{name}.npy", arr)
    (clip_dir / "meta.json").write_text(json.dumps(meta) + "\n")
    return meta


def write_synthetic_dataset(
    root: str | Path,
    num_persons: int = 3,
    clips_per_person: int = 1,
    num_frames: int = 48,
    size: int = 64,
    seed: int = 0,
) -> dict[str, object]:
    """Write a dataset of ``num_persons × clips_per_person`` clips and its manifest; returns the manifest."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for p in range(num_persons):
        for c in range(clips_per_person):
            write_synthetic_clip(root, f"synthetic_p{p}_c{c}", p, num_frames, size, rng)
    return write_manifest(root, size, [])
