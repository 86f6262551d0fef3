"""E_face: multi-scale features of the masked target frame, and the SaMF gates that fuse them.

Spec §2.4 (encoder and gates) and §2.7 (where the decoder blends the features in).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBlock
from .config import StyleLipSyncConfig
from .layers import KernelModule
from .synthesis import CPU_SPLIT_RESOLUTION, SynthesisLayer


class SaMF(SynthesisLayer):
    """Style-aware Masked Fusion gate: S = sigmoid(lrelu·√2(modconv3×3_{C→1}(F, A(w)) + b)).

    feature F [B, C, h, h], style w [B, style_dim] → S [B, 1, h, h] in (0, 1). The decoder block then blends
    x ← S⊙F + (1−S)⊙x. Built as a noise-free ``SynthesisLayer`` with one output channel, which gives the
    official parameter names (``weight``, ``bias``, ``affine.*``, unused ``resample_filter``).
    """

    def __init__(self, channels: int, style_dim: int, resolution: int) -> None:
        super().__init__(channels, 1, style_dim, resolution, kernel_size=3, up=1, use_noise=False)

    def forward(  # type: ignore[override]
        self, feature: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = None
    ) -> torch.Tensor:
        return torch.sigmoid(super().forward(feature, w, "none", fused_modconv))


class FaceEncoder(KernelModule):
    """Non-residual down-sampling encoder over the masked frame, plus one SaMF gate per feature level.

    [N, 3, R, R] → f_enc0 (7×7, C_R at R²) → f_enc1..n (3×3 conv, IN, ReLU, AvgPool ↓2), giving
    F_k [N, C_{R/2^k}, R/2^k, R/2^k] for k = 1…n (n = 6 at 256²: 128@128² … 512@4²). ``f_mix{k}`` gates F_k.
    """

    def __init__(self, config: StyleLipSyncConfig) -> None:
        super().__init__()
        self.resolution = config.resolution
        self.num_levels = config.num_feature_levels
        res = config.resolution
        self.f_enc0 = nn.Sequential(ConvBlock(config.image_channels, config.channels(res), kernel_size=7))
        for k in range(1, self.num_levels + 1):
            block = ConvBlock(config.channels(res >> (k - 1)), config.channels(res >> k), 3, downsample=True)
            setattr(self, f"f_enc{k}", nn.Sequential(block))
        for k in range(1, self.num_levels + 1):
            setattr(self, f"f_mix{k}", SaMF(config.channels(res >> k), config.style_dim, res >> k))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Masked frames [N, 3, R, R] → features ordered for the decoder, coarsest first: [F_n, …, F_1]."""
        if x.ndim != 4 or x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            raise ValueError(
                f"frames must be [N, 3, {self.resolution}, {self.resolution}], got {list(x.shape)}"
            )
        first = 1
        features: list[torch.Tensor] = []
        if self.fast_kernels() and x.device.type == "cpu" and x.shape[0] > 1:
            # high-resolution levels one sample at a time (see CPU_SPLIT_RESOLUTION)
            while first <= self.num_levels and self.resolution >> (first - 1) >= CPU_SPLIT_RESOLUTION:
                first += 1
        if first > 1:
            per_sample = [self._levels(self.f_enc0(x[n : n + 1]), 1, first) for n in range(x.shape[0])]
            features = [torch.cat(level) for level in zip(*per_sample, strict=True)]
            h = features[-1]
        else:
            h = self.f_enc0(x)
        features += self._levels(h, first, self.num_levels + 1)
        return features[::-1]

    def _levels(self, h: torch.Tensor, start: int, stop: int) -> list[torch.Tensor]:
        """Features F_start … F_{stop-1} from F_{start-1} (the stem output for start = 1)."""
        out = []
        for k in range(start, stop):
            h = getattr(self, f"f_enc{k}")(h)
            out.append(h)
        return out

    @property
    def gates(self) -> list[SaMF]:
        """SaMF gates in decoder order, coarsest first: [f_mix_n, …, f_mix_1]."""
        return [getattr(self, f"f_mix{k}") for k in range(self.num_levels, 0, -1)]
