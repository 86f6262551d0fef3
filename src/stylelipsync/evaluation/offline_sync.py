"""Offline lip-sync score that needs no downloaded weights: lagged correlation of two per-frame signals.

The signals are the mouth opening measured on the video (landmarks) and a speech-driven signal at the same
frame rate: the speech energy envelope, or a mouth opening predicted from the audio. The best lag says how
far the mouth trails the audio (positive: the mouth moves after the sound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
