"""Perceptual image losses: LPIPS (VGG16) from a user-supplied state dict, and an MS-SSIM fallback.

LPIPS needs ImageNet VGG16 weights plus the LPIPS linear heads, which cannot be downloaded here. ``LPIPS``
reimplements the network (no torchvision) with the module layout of the reference ``lpips`` package
(``net.slice1…5`` holding VGG16 ``features`` layers under their original indices, ``lin0…4.model.1``), so a
state dict saved from ``lpips.LPIPS(net="vgg")`` loads as is; a torchvision ``vgg16`` state dict
(``features.N.*``) merged with the LPIPS heads (``lin*.model.1.weight``) is accepted too.

Without weights, ``PerceptualLoss`` falls back to 1 − MS-SSIM on the whole frame plus L1 on the mouth region,
and logs a warning: it is a structural substitute, not a learned perceptual metric.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("stylelipsync.losses")

# VGG16 "features": (index, in, out) of each conv; ReLUs follow every conv, max-pools at 4, 9, 16, 23.
_VGG_CONVS = [
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (17, 256, 512),
    (19, 512, 512),
    (21, 512, 512),
    (24, 512, 512),
    (26, 512, 512),
    (28, 512, 512),
]
_SLICES = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]
_POOLS = (4, 9, 16, 23)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class ScalingLayer(nn.Module):
    """Maps [−1, 1] images to the ImageNet-normalised input LPIPS's VGG expects."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class VGG16Slices(nn.Module):
    """VGG16 conv trunk cut after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (``slice1`` … ``slice5``)."""

    def __init__(self) -> None:
        super().__init__()
        convs = {i: nn.Conv2d(cin, cout, 3, padding=1) for i, cin, cout in _VGG_CONVS}
        for k, (lo, hi) in enumerate(_SLICES, start=1):
            seq = nn.Sequential()
            for i in range(lo, hi):
                if i in convs:
                    layer: nn.Module = convs[i]
                elif i in _POOLS:
                    layer = nn.MaxPool2d(2, 2)
                else:
                    layer = nn.ReLU(inplace=False)
                seq.add_module(str(i), layer)
            setattr(self, f"slice{k}", seq)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs


class NetLinLayer(nn.Module):
    """LPIPS head: dropout + 1×1 conv (no bias) to one channel (``model.1.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS-VGG distance between images in [−1, 1]: [N, 3, H, W] × 2 → [N]. Frozen, eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Slices()
        for k, ch in enumerate(LPIPS_CHANNELS):
            setattr(self, f"lin{k}", NetLinLayer(ch))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)

    @classmethod
    def from_file(cls, path: str | Path) -> LPIPS:
        """Load weights saved with ``torch.save(state_dict)`` (lpips-package or torchvision+heads layout)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model = cls()
        model.load_state_dict(convert_lpips_state_dict(state), strict=True)
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.net(self.scaling_layer(x))
        fy = self.net(self.scaling_layer(y))
        total = x.new_zeros(x.shape[0])
        for k, (a, b) in enumerate(zip(fx, fy, strict=True)):
            diff = (_normalize(a) - _normalize(b)).square()
            total = total + getattr(self, f"lin{k}")(diff).mean(dim=(1, 2, 3))
        return total


def convert_lpips_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict to this module's keys; accepts the lpips-package and torchvision layouts."""
    slice_of = {}
    for k, (lo, hi) in enumerate(_SLICES, start=1):
        for i in range(lo, hi):
            slice_of[i] = k
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("lins."):
            continue
        m = re.match(r"^features\.(\d+)\.(weight|bias)$", key)
        if m:
            idx = int(m.group(1))
            out[f"net.slice{slice_of[idx]}.{idx}.{m.group(2)}"] = value
            continue
        if key.startswith("classifier."):
            continue
        out[key] = value
    defaults = ScalingLayer()
    out.setdefault("scaling_layer.shift", defaults.shift)
    out.setdefault("scaling_layer.scale", defaults.scale)
    return out


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and contrast-structure terms for images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    ch = x.shape[1]
    k = window.numel()
    wx = window.view(1, 1, 1, k).expand(ch, 1, 1, k)
    wy = window.view(1, 1, k, 1).expand(ch, 1, k, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=ch), wy, groups=ch)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
    return ssim.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM [N] of images in [−1, 1]; uses as many of the 5 scales as the size allows."""
    x = (x.float() + 1) / 2
    y = (y.float() + 1) / 2
    side = min(x.shape[-2:])
    win = min(window_size, side)
    scales = max(1, min(5, int(math.log2(max(side / win, 1))) + 1))
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    window = _gaussian_window(win, sigma, x.device, x.dtype)
    values = []
    for s in range(scales):
        ssim, cs = _ssim_terms(x, y, window)
        values.append(ssim if s == scales - 1 else cs)
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1).clamp(min=1e-6)
    return torch.prod(stacked ** weights.view(1, -1), dim=1)


class PerceptualLoss(nn.Module):
    """LPIPS when weights are given, else the documented substitute 1 − MS-SSIM + mouth-region L1.

    forward(x̂, y, mouth) with images [N, 3, H, W] in [−1, 1] and a mouth weight map [N, 1, H, W] → scalar.
    """

    def __init__(self, lpips_weights: str | Path | None = None) -> None:
        super().__init__()
        self.lpips: LPIPS | None = None
        if lpips_weights:
            self.lpips = LPIPS.from_file(lpips_weights)
            log.info("perceptual loss: LPIPS-VGG16 from %s", lpips_weights)
        else:
            log.warning(
                "perceptual loss: NO LPIPS WEIGHTS (set lpips_weights: PATH in the config). Using the "
                "substitute 1 - MS-SSIM + L1 on the mouth region instead; this is not LPIPS and gives less "
                "sharp results."
            )

    @property
    def kind(self) -> str:
        return "lpips" if self.lpips is not None else "msssim_mouth_l1"

    def forward(self, x: torch.Tensor, y: torch.Tensor, mouth: torch.Tensor | None = None) -> torch.Tensor:
        if self.lpips is not None:
            return self.lpips(x.float(), y.float()).mean()
        loss = 1.0 - ms_ssim(x, y).mean()
        if mouth is not None:
            w = mouth.float()
            loss = loss + ((x.float() - y.float()).abs() * w).sum() / (w.sum() * x.shape[1]).clamp(min=1.0)
        return loss
