"""Mouth opening predicted from speech by a ridge regression: the reference signal of the offline sync score.

Why: the raw speech energy is a weak proxy for how far the mouth opens (vowels vs nasals, breath, noise), and
a learned conv net memorises the few speakers it is trained on (docs/small_data_findings.md). A *linear* map
from per-clip-normalised log-mel context to the per-clip z-scored mouth opening generalises to unseen people.

Features of video frame t (time t / fps): the StyleLipSync log-mel (80 bands, 100 Hz), normalised per clip
and band (mean 0, std 1), pooled to 16 bands of 5, over ±200 ms around the frame (41 mel frames), i.e.
41 × 16 = 656 numbers. Mel frames outside the audio count as the clip mean (zeros).

The shipped model (`assets/mouth_from_audio.safetensors`, a few kB) is fitted by
`scripts/fit_mouth_from_audio.py` on the shared talking clips of every person **except** `HELD_OUT_PERSONS`,
which are kept for validating it (and the project's other models) on people it has never heard or seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from stylelipsync.audio import MEL_FRAMES_PER_SECOND, N_MELS, log_mel_spectrogram
from stylelipsync.errors import CheckpointError

CONTEXT = 20
BAND_POOL = 5
STD_FLOOR = 0.1
# Persons (MANIFEST.tsv person_tag) never used to fit the shipped model: frontal or 3/4 faces with their
# own audio at 25 fps (vrt_face_4 is 30 fps), the same persons the SyncNet-expert probe holds out.
HELD_OUT_PERSONS = ("man_goatee_1", "woman_blonde_1", "man_bald_4", "woman_dark_hair_1", "man_red_bg_1")
ASSET_NAME = "mouth_from_audio.safetensors"


def audio_context_features(
    wave: np.ndarray,
    sample_rate: int,
    num_frames: int,
    fps: float,
    *,
    context: int = CONTEXT,
    band_pool: int = BAND_POOL,
) -> np.ndarray:
    """(num_frames, (2·context + 1) · 80 / band_pool) float32 per-clip-normalised log-mel context."""
    if N_MELS % band_pool:
        raise ValueError(f"band_pool must divide {N_MELS}, got {band_pool}")
    mel = log_mel_spectrogram(wave, sample_rate).numpy().astype(np.float64)
    mel = (mel - mel.mean(axis=0)) / np.maximum(mel.std(axis=0), STD_FLOOR)
    pooled = mel.reshape(len(mel), N_MELS // band_pool, band_pool).mean(axis=2)
    centres = np.rint(np.arange(num_frames) * MEL_FRAMES_PER_SECOND / fps).astype(np.int64)
    tail = max(0, int(centres.max(initial=0)) + 1 - len(pooled))
    padded = np.pad(pooled, ((context, context + tail), (0, 0)))
    index = centres[:, None] + np.arange(2 * context + 1)[None, :]
    return padded[index].reshape(num_frames, -1).astype(np.float32)


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-clip z-score ignoring NaN (NaN stays NaN); a constant signal becomes zeros."""
    x = np.asarray(x, dtype=np.float64)
    mean, std = np.nanmean(x), np.nanstd(x)
    return (x - mean) / std if std > 0 else np.where(np.isfinite(x), 0.0, np.nan)


def fit_ridge(features: np.ndarray, target: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge regression weight and bias (intercept not penalised) on the finite rows of `target`."""
    keep = np.isfinite(target)
    x = np.asarray(features, dtype=np.float64)[keep]
    y = np.asarray(target, dtype=np.float64)[keep]
    mx, my = x.mean(axis=0), y.mean()
    xc = x - mx
    gram = xc.T @ xc + alpha * np.eye(x.shape[1])
    weight = np.linalg.solve(gram, xc.T @ (y - my))
    return weight, float(my - mx @ weight)


@dataclass(frozen=True)
class AudioToMouth:
    """Linear map from `audio_context_features` to the z-scored mouth opening of each video frame."""

    weight: np.ndarray
    bias: float
    context: int = CONTEXT
    band_pool: int = BAND_POOL
    info: dict[str, str] = field(default_factory=dict)

    def predict(self, wave: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
        """(num_frames,) float64 predicted mouth opening (z-score units) for the frames of a video."""
        feats = audio_context_features(
            wave, sample_rate, num_frames, fps, context=self.context, band_pool=self.band_pool
        )
        return feats.astype(np.float64) @ self.weight + self.bias

    def save(self, path: str | Path) -> None:
        """Write weight and bias as float32 safetensors; hyper-parameters and provenance as metadata."""
        meta = {"context": str(self.context), "band_pool": str(self.band_pool), "info": json.dumps(self.info)}
        tensors = {
            "weight": np.ascontiguousarray(self.weight, dtype=np.float32),
            "bias": np.asarray([self.bias], dtype=np.float32),
        }
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> AudioToMouth:
        """Read a file written by `save`."""
        try:
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
                weight = fh.get_tensor("weight").astype(np.float64)
                bias = float(fh.get_tensor("bias")[0])
        except (OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a mouth-from-audio model ({exc})") from exc
        context, band_pool = int(meta.get("context", CONTEXT)), int(meta.get("band_pool", BAND_POOL))
        expected = (2 * context + 1) * (N_MELS // band_pool)
        if weight.shape != (expected,):
            raise CheckpointError(f"{path}: weight has shape {weight.shape}, expected ({expected},)")
        return cls(weight, bias, context, band_pool, json.loads(meta.get("info", "{}")))

    @classmethod
    def default(cls) -> AudioToMouth:
        """The model shipped in the package (fitted on the shared clips of the training persons)."""
        asset = resources.files("stylelipsync") / "assets" / ASSET_NAME
        with resources.as_file(asset) as path:
            if not path.is_file():
                raise CheckpointError(
                    f"{path} is missing: regenerate it with "
                    "scripts/fit_mouth_from_audio.py --media ../shared/media"
                )
            return cls.load(path)
