"""Convolutional blocks shared by the face encoder and the reference encoder (spec §2.3–2.4).

Attribute names (``conv``, ``norm``, ``residual``) match the official checkpoint keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Module):
    """Conv k×k (bias, same padding) → InstanceNorm (affine) → ReLU, then AvgPool 2×2 if ``downsample``.

    [N, in_channels, H, W] → [N, out_channels, H, W] (or H/2, W/2 with ``downsample``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, downsample: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.avg_pool2d(x, 2) if self.downsample else x


class DownResidualBlock(nn.Module):
    """Residual down-sampling block: ReLU(AvgPool(ReLU(IN(Conv3×3(x)))) + Conv1×1_stride2(x)).

    [N, in_channels, H, W] → [N, out_channels, H/2, W/2].
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True)
        self.residual = nn.Conv2d(in_channels, out_channels, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)
        return F.relu(main + self.residual(x))
