"""MaLS (Moving-average based Latent Smoothing) for one style layer (spec §2.5, supplement eq. (1))."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MOVING_AVERAGE_WEIGHTS = (0.25, 0.5, 0.25)


def moving_average(u: torch.Tensor) -> torch.Tensor:
    """Fixed (0.25, 0.5, 0.25) average over (t−1, t, t+1) with replicated ends: [B, C, T] → [B, C, T]."""
    padded = F.pad(u, (1, 1), mode="replicate")
    w0, w1, w2 = MOVING_AVERAGE_WEIGHTS
    return w0 * padded[..., :-2] + w1 * padded[..., 1:-1] + w2 * padded[..., 2:]


class MaLS(nn.Module):
    """Temporal smoothing of one style layer: moving average, then Conv1d → LeakyReLU(0.1) → Conv1d.

    The convolutions use kernel 3 and reflect padding along time, so T ≥ 2 is required.
    u [B, T, C] (time-major, as styles are stored) → [B, T, C]. Receptive field ±3 frames.
    """

    def __init__(self, channels: int, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1, padding_mode="reflect"),
            nn.LeakyReLU(negative_slope),
            nn.Conv1d(channels, channels, 3, padding=1, padding_mode="reflect"),
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.ndim != 3 or u.shape[2] != self.channels:
            raise ValueError(f"MaLS input must be [B, T, {self.channels}], got {list(u.shape)}")
        if u.shape[1] < 2:
            raise ValueError(f"MaLS needs at least 2 frames (reflect padding along time), got T={u.shape[1]}")
        x = moving_average(u.transpose(1, 2))
        return self.conv(x).transpose(1, 2)
