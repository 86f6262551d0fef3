"""Speech → mouth shape: the descriptor the mouth-bank renderer selects its frames by, predicted from audio.

Why linear: on the few dozen shared clips a ridge regression from per-clip-normalised log-mel context
carries over to voices never heard in training, where conv nets memorise the training speakers
(docs/small_data_findings.md). The model here is that ridge, to all six descriptor columns of
`stylelipsync.face.mouth_shape` (opening, width, pc1…pc4), each in per-clip z-units.

Its features (log-mel context, spectral summaries, formant tracks, phone classes, speech embeddings; which of
them and how: `MelFeatureSpec`) are built in `audio.mouth_features`. The output is the least-squares estimate
of the z-scored descriptor, so its spread is below 1 (about the correlation it reaches); rescale per clip if a
unit-variance signal is needed.

Shipped weights (`MouthShapeModel.default`): `assets/mouth_shape.safetensors` (full context, mel, spectral
summaries and speech embeddings of ±4 windows, a layout chosen by grouped cross-validation over the training
persons, any language: the best leave-one-person-out and the best agreement of the dubbed mouth with the real
speaker; the formant variant scored higher leave-one-person-out than the mel model but lowered that agreement,
so it is not shipped), `assets/mouth_shape_phones.safetensors`
(full context + phone classes, English, needs pocketsphinx) and `assets/mouth_shape_causal.safetensors`
(≤ 100 ms look-ahead, streamable, mel only: Praat's tracks are not streamed), fitted on all shared talking
clips by `scripts/fit_mouth_shape.py`, which also writes the leave-one-person-out benchmark
(`benchmarks/mouth_shape_lopo.md`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from stylelipsync.audio.mel import log_mel_spectrogram_numpy
from stylelipsync.audio.mouth_features import ClipFeatures, MelFeatureSpec
from stylelipsync.errors import CheckpointError

F64 = NDArray[np.float64]
NAMES = ("opening", "width", "pc1", "pc2", "pc3", "pc4")
FULL_ASSET = "mouth_shape.safetensors"
CAUSAL_ASSET = "mouth_shape_causal.safetensors"
PHONES_ASSET = "mouth_shape_phones.safetensors"
PREDICT_CHUNK_FRAMES = 500
"""Video frames whose feature rows are assembled at once by `MouthShapeModel.predict` (20 s at 25 fps)."""


@dataclass(frozen=True)
class MouthShapeModel:
    """Linear map from audio context features to the per-clip z-scored mouth-shape descriptor.

    weight (F, 6), bias (6,); `smooth` (K,) FIR taps over video frames whose tap `smooth_centre` is lag 0
    (taps after it read future predictions); `prior_mean`/`prior_std` (94,) `frame_features` statistics of the
    training audio, used by running normalisation.
    """

    spec: MelFeatureSpec
    weight: F64
    bias: F64
    prior_mean: F64
    prior_std: F64
    smooth: F64 = field(default_factory=lambda: np.ones(1))
    smooth_centre: int = 0
    names: tuple[str, ...] = NAMES
    info: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weight.shape != (self.spec.size, len(self.names)):
            raise ValueError(
                f"weight {self.weight.shape} does not match ({self.spec.size}, {len(self.names)})"
            )
        if not 0 <= self.smooth_centre < len(self.smooth):
            raise ValueError(f"smooth_centre {self.smooth_centre} outside {len(self.smooth)} taps")

    @property
    def smooth_future_frames(self) -> int:
        return len(self.smooth) - 1 - self.smooth_centre

    def lookahead(self, fps: float = 25.0) -> float:
        """Seconds of audio after frame t's time that the prediction at t depends on, at `fps`."""
        return self.spec.lookahead_seconds + self.smooth_future_frames / fps

    @property
    def causal(self) -> bool:
        """True for the streaming variant: no whole-clip statistics, look-ahead ≤ 100 ms at 25 fps."""
        return self.spec.normalization == "running" and self.lookahead(25.0) <= 0.1 + 1e-9

    def clip_features(
        self,
        wave: np.ndarray,
        sample_rate: int,
        num_frames: int,
        fps: float,
        segments: list[tuple[str, int, int]] | None = None,
    ) -> ClipFeatures:
        """The clip-level inputs of the frames at t / fps, from which `ClipFeatures.rows` assembles feature
        rows (`segments`: phones, if already known)."""
        mel = log_mel_spectrogram_numpy(wave, sample_rate).astype(np.float64)
        prior = (self.prior_mean, self.prior_std)
        return ClipFeatures.of(mel, self.spec, num_frames, fps, prior, segments, wave, sample_rate)

    def features(
        self,
        wave: np.ndarray,
        sample_rate: int,
        num_frames: int,
        fps: float,
        segments: list[tuple[str, int, int]] | None = None,
    ) -> F64:
        """(num_frames, F) features of the video frames at t / fps (`segments`: phones, if already known)."""
        return self.clip_features(wave, sample_rate, num_frames, fps, segments).rows(0, num_frames)

    def predict(self, wave: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> F64:
        """(num_frames, 6) float64 mouth shape (per-clip z-units) of frames at t / fps; lag 0.

        The feature rows are assembled `PREDICT_CHUNK_FRAMES` at a time: a whole clip's rows take 14 kB per
        frame (1710 features), 200 MB for 10 minutes, while the clip-level inputs they are made from take a
        tenth of that."""
        if num_frames <= 0:
            return np.zeros((0, len(self.names)))
        clip = self.clip_features(wave, sample_rate, num_frames, fps)
        out = np.empty((num_frames, len(self.names)))
        for lo in range(0, num_frames, PREDICT_CHUNK_FRAMES):
            hi = min(lo + PREDICT_CHUNK_FRAMES, num_frames)
            out[lo:hi] = clip.rows(lo, hi) @ self.weight + self.bias
        return smooth_frames(out, self.smooth, self.smooth_centre)

    def save(self, path: str | Path) -> None:
        """float32 safetensors; the feature spec, smoothing and provenance as metadata."""
        meta = {
            "format": "stylelipsync.mouth_shape_model/1",
            "spec": json.dumps(asdict(self.spec)),
            "smooth_centre": str(self.smooth_centre),
            "names": json.dumps(list(self.names)),
            "info": json.dumps(self.info),
        }
        tensors = {
            "weight": np.ascontiguousarray(self.weight, dtype=np.float32),
            "bias": np.ascontiguousarray(self.bias, dtype=np.float32),
            "prior_mean": np.ascontiguousarray(self.prior_mean, dtype=np.float32),
            "prior_std": np.ascontiguousarray(self.prior_std, dtype=np.float32),
            "smooth": np.ascontiguousarray(self.smooth, dtype=np.float32),
        }
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> MouthShapeModel:
        """Read a file written by `save`; CheckpointError if it is missing or not such a model."""
        fix = "regenerate it with scripts/fit_mouth_shape.py --media ../shared/media"
        if not Path(path).is_file():
            raise CheckpointError(f"{path} is missing: {fix}")
        try:
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
                t = {k: fh.get_tensor(k).astype(np.float64) for k in fh.keys()}  # noqa: SIM118
            if meta.get("format") != "stylelipsync.mouth_shape_model/1":
                raise ValueError(f"format is {meta.get('format')!r}")
            return cls(
                spec=MelFeatureSpec(**json.loads(meta["spec"])),
                weight=t["weight"],
                bias=t["bias"],
                prior_mean=t["prior_mean"],
                prior_std=t["prior_std"],
                smooth=t["smooth"],
                smooth_centre=int(meta["smooth_centre"]),
                names=tuple(json.loads(meta["names"])),
                info=json.loads(meta.get("info", "{}")),
            )
        except (OSError, KeyError, ValueError, TypeError, SafetensorError) as exc:
            raise CheckpointError(f"{path}: not a mouth-shape model ({exc}); {fix}") from exc

    @classmethod
    def default(cls, causal: bool = False, phones: bool = False) -> MouthShapeModel:
        """A shipped model: full context (mel only, or with English phone classes from pocketsphinx when
        `phones`), or the ≤ 100 ms look-ahead variant for streaming (mel only)."""
        if causal and phones:
            raise ValueError(
                "there is no streaming model with phone features (the phone decoder needs the clip)"
            )
        name = CAUSAL_ASSET if causal else PHONES_ASSET if phones else FULL_ASSET
        with resources.as_file(resources.files("stylelipsync") / "assets" / name) as path:
            return cls.load(path)


def smooth_frames(x: F64, taps: F64, centre: int) -> F64:
    """FIR-filter each column of (T, D) `x` over time: y[t] = Σ_k taps[k] · x[t + k − centre].

    Edges repeat the first/last row, so a constant signal stays constant.
    """
    if len(taps) == 1:
        return x * float(taps[0])
    before, after = centre, len(taps) - 1 - centre
    padded = np.concatenate([np.repeat(x[:1], before, axis=0), x, np.repeat(x[-1:], after, axis=0)])
    out = np.zeros_like(x)
    for k, w in enumerate(taps):
        out += w * padded[k : k + len(x)]
    return out


__all__ = [
    "CAUSAL_ASSET",
    "FULL_ASSET",
    "NAMES",
    "PHONES_ASSET",
    "PREDICT_CHUNK_FRAMES",
    "MouthShapeModel",
    "smooth_frames",
]
