"""Patch discriminator for the lower face (training only).

Pixel losses on little data give a blurred average mouth; a patch-level adversarial term rewards local detail
(lip edges, teeth) where the generated region is pasted. The network is fully convolutional and returns one
logit per patch, so the training loss can be restricted to the patches of the regenerated region.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """[N, 3, H, W] images in [−1, 1] → [N, 1, H/2^L, W/2^L] logits, L = ``len(channels)``.

    Stride-2 4×4 convolutions with spectral normalisation (stable without R1 on a few thousand CPU steps),
    then a 3×3 convolution to one logit per patch. With the default three levels each logit sees about 46×46
    pixels.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), in_channels: int = 3) -> None:
        super().__init__()
        if not channels:
            raise ValueError("PatchDiscriminator needs at least one level")
        layers: list[nn.Module] = []
        prev = in_channels
        for ch in channels:
            layers += [spectral_norm(nn.Conv2d(prev, ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            prev = ch
        layers.append(spectral_norm(nn.Conv2d(prev, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)
        self.levels = len(channels)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img)

    def region_weights(self, region: torch.Tensor) -> torch.Tensor:
        """[N, 1, H, W] region weight in [0, 1] → per-patch weight [N, 1, h, w], the shape of ``forward``."""
        factor = 2**self.levels
        return nn.functional.avg_pool2d(region, factor, factor)


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of per-patch values; 0 when the weights are all zero."""
    return (values * weights).sum() / weights.sum().clamp(min=1e-6)
