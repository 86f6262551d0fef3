"""Per-clip mel normalisation: the one definition shared by training and inference.

Each of the 80 bands is standardised with the mean and std of the whole clip (the driving audio at inference),
so a small audio encoder sees speaker- and channel-independent features. Weights trained this way say so with
`mel_normalization: "per_clip"` in their config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MEL_STD_FLOOR = 1e-3
"""Smallest per-band std: silent or constant bands are not blown up."""


def mel_stats(mel: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (80,) float32 over a clip's log-mel (N, 80), computed in float64."""
    mel = np.asarray(mel)
    mean = mel.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.maximum(mel.std(axis=0, dtype=np.float64), MEL_STD_FLOOR).astype(np.float32)
    return mean, std


def normalize_mel(mel: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalise mel windows [..., 20, 80] with clip stats [B, 80] (or [80])."""
    while mean.ndim < mel.ndim:
        mean, std = mean.unsqueeze(-2), std.unsqueeze(-2)
    return (mel - mean) / std
