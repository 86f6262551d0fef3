"""E_ref (official name ``lip_encoder``): one unmasked reference frame → identity W+ offsets (spec §2.3)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBlock, DownResidualBlock
from .config import StyleLipSyncConfig


class ReferenceEncoder(nn.Module):
    """Residual down-sampling encoder plus one linear layer.

    [N, 3, R, R] in [−1, 1] → l_enc0 (7×7, C_R) → l_enc1..n (residual ↓2 each, down to [N, C_4, 4, 4])
    → flatten (C_4·16) → fcs → w_ref [N, num_ws, style_dim]. At 256²: 6 down blocks, 8,192 → 7,168.
    """

    def __init__(self, config: StyleLipSyncConfig) -> None:
        super().__init__()
        self.num_ws = config.num_ws
        self.style_dim = config.style_dim
        self.resolution = config.resolution
        self.num_levels = config.num_feature_levels
        res = config.resolution
        self.l_enc0 = nn.Sequential(ConvBlock(config.image_channels, config.channels(res), kernel_size=7))
        for k in range(1, self.num_levels + 1):
            block = DownResidualBlock(config.channels(res >> (k - 1)), config.channels(res >> k))
            setattr(self, f"l_enc{k}", nn.Sequential(block))
        self.fcs = nn.Sequential(
            nn.Flatten(), nn.Linear(config.channels(4) * 16, self.num_ws * self.style_dim)
        )

    def forward(self, ref: torch.Tensor) -> torch.Tensor:
        if ref.ndim == 5:
            ref = ref.flatten(0, 1)
        if ref.ndim != 4 or ref.shape[-1] != self.resolution or ref.shape[-2] != self.resolution:
            raise ValueError(
                f"reference must be [N, 3, {self.resolution}, {self.resolution}] (or 5-D), "
                f"got {list(ref.shape)}"
            )
        x = self.l_enc0(ref)
        for k in range(1, self.num_levels + 1):
            x = getattr(self, f"l_enc{k}")(x)
        return self.fcs(x).reshape(ref.shape[0], self.num_ws, self.style_dim)
