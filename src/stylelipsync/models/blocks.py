"""Convolutional blocks shared by the face encoder and the reference encoder (spec §2.3–2.4).

Attribute names (``conv``, ``norm``, ``residual``) match the official checkpoint keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import KernelModule, to_channels_last

MOMENT_BLOCK_ELEMENTS = 1 << 18
"""Elements per step of the blocked variance in ``instance_norm_relu_`` (1 MiB of float32 temporaries)."""


def instance_norm_relu_(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """ReLU(InstanceNorm(x)) with affine parameters, computed in place on a channels-last x [B, C, H, W].

    Means over the pixels of the [B, H·W, C] view, then a two-pass variance in blocks of rows, so that no
    full-size temporary is made (a fresh 100 MB tensor costs more in page faults than the arithmetic).
    """
    batch, channels, height, width = x.shape
    pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
    cdtype = torch.promote_types(x.dtype, torch.float32)  # statistics in at least float32
    mean = pixels.mean(dim=1, dtype=cdtype)
    sq = torch.zeros_like(mean)
    rows = max(1, MOMENT_BLOCK_ELEMENTS // channels)
    for start in range(0, height * width, rows):
        sq += (pixels[:, start : start + rows].to(cdtype) - mean[:, None]).square_().sum(dim=1)
    scale = weight.to(cdtype) * (sq / (height * width) + eps).rsqrt()
    shift = bias.to(cdtype) - mean * scale
    dtype = x.dtype
    torch.addcmul(shift.to(dtype)[:, :, None, None], x, scale.to(dtype)[:, :, None, None], out=x)
    return x.relu_()


class ConvBlock(KernelModule):
    """Conv k×k (bias, same padding) → InstanceNorm (affine) → ReLU, then AvgPool 2×2 if ``downsample``.

    [N, in_channels, H, W] → [N, out_channels, H, W] (or H/2, W/2 with ``downsample``). The fast kernels
    (``kernels``) fuse the normalisation and ReLU in place, on CPU in eager mode.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, downsample: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        # on CPU, in eager mode: a compiler fuses the reference ops itself, and GPUs have fused kernels
        eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
        if self.fast_kernels() and eager_cpu and norm.affine and not norm.track_running_stats:
            x = self.conv(to_channels_last(x))
            instance_norm_relu_(to_channels_last(x), norm.weight, norm.bias, norm.eps)
        else:
            x = F.relu(norm(self.conv(x)))
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
