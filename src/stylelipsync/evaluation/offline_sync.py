"""Offline lip-sync score that needs no downloaded weights: lagged correlation of two per-frame signals.

The signals are the mouth opening measured on the video (landmarks) and a speech-driven signal at the same
frame rate: the speech energy envelope, or a mouth opening predicted from the audio. The best lag says how
far the mouth trails the audio (positive: the mouth moves after the sound).

Two scores, reported side by side:

* (a) `energy_sync`: mouth opening vs the speech energy envelope (RMS amplitude per frame), best lag
  within ±5 frames;
* (b) `predicted_sync`: mouth opening vs the mouth opening a ridge regression predicts from the log-mel
  context (`audio_to_mouth`), best lag within ±2 frames. It separates matched from mismatched speech much
  better than (a) on people the regression never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stylelipsync.audio import frame_energy
from stylelipsync.evaluation.audio_to_mouth import AudioToMouth

ENERGY_MAX_LAG = 5
PREDICTED_MAX_LAG = 2


@dataclass(frozen=True)
class LaggedCorrelation:
    """Best Pearson correlation over a lag search, the lag where it occurs and the whole curve."""

    correlation: float
    lag: int
    curve: dict[int, float]
    frames: int


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3:
        return float("nan")
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def lagged_correlation(mouth: np.ndarray, audio_signal: np.ndarray, max_lag: int = 5) -> LaggedCorrelation:
    """Pearson correlation of mouth[t + lag] with audio_signal[t] for lag in [-max_lag, max_lag].

    NaN frames (no face) are left out. The best lag maximises the correlation; ties go to the smaller |lag|.
    """
    mouth = np.asarray(mouth, dtype=np.float64)
    audio_signal = np.asarray(audio_signal, dtype=np.float64)
    n = min(len(mouth), len(audio_signal))
    mouth, audio_signal = mouth[:n], audio_signal[:n]
    curve: dict[int, float] = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            curve[lag] = _pearson(mouth[lag:], audio_signal[: n - lag])
        else:
            curve[lag] = _pearson(mouth[: n + lag], audio_signal[-lag:])
    finite = {k: v for k, v in curve.items() if np.isfinite(v)}
    if not finite:
        return LaggedCorrelation(float("nan"), 0, curve, n)
    best = max(finite, key=lambda k: (finite[k], -abs(k)))
    return LaggedCorrelation(finite[best], best, curve, n)


def covered_frames(num_frames: int, num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames (out of `num_frames`) whose time lies inside an audio of `num_samples` samples."""
    return min(num_frames, int(np.ceil(num_samples / sample_rate * fps - 1e-6)))


def energy_sync(
    mouth: np.ndarray, wave: np.ndarray, sample_rate: int, fps: float, max_lag: int = ENERGY_MAX_LAG
) -> LaggedCorrelation:
    """(a) Correlation of the mouth opening with the speech energy envelope, best lag within ±`max_lag`.

    The envelope is `frame_energy` as linear RMS amplitude: in dB the noise floor of the pauses (and the
    −100 dB of digital silence) dominates the variance; amplitude follows the syllables (13 of the 36
    shared clips pass r ≥ 0.2 at |lag| ≤ 2 with amplitude, 8 with dB). Only the frames the audio covers
    are scored (a shorter audio would otherwise add a silent tail).
    """
    mouth = np.asarray(mouth)[: covered_frames(len(mouth), len(wave), sample_rate, fps)]
    envelope = 10.0 ** (frame_energy(wave, sample_rate, len(mouth), fps).astype(np.float64) / 20.0)
    return lagged_correlation(mouth, envelope, max_lag)


def predicted_sync(
    mouth: np.ndarray,
    wave: np.ndarray,
    sample_rate: int,
    fps: float,
    model: AudioToMouth | None = None,
    max_lag: int = PREDICTED_MAX_LAG,
) -> LaggedCorrelation:
    """(b) Correlation of the mouth opening with the opening predicted from the audio (shipped model)."""
    model = AudioToMouth.default() if model is None else model
    mouth = np.asarray(mouth)[: covered_frames(len(mouth), len(wave), sample_rate, fps)]
    predicted = model.predict(wave, sample_rate, len(mouth), fps)
    return lagged_correlation(mouth, predicted, max_lag)
