"""E_aud: an SE-ResNet-18 over one 20×80 log-mel window per video frame → W+ offsets (spec §2.2).

Names follow the official checkpoint (``audio_encoder.audio_encoder.layer1.0.se.fc.0.weight`` …).
"""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel attention: x · sigmoid(W2 ReLU(W1 avgpool(x))), no biases. [N, C, H, W] → same."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc(x.mean(dim=(2, 3)))
        return x * scale[:, :, None, None]


class SEBasicBlock(nn.Module):
    """ResNet basic block with squeeze-excitation before the residual sum.

    Conv3×3(stride) → BN → ReLU → Conv3×3 → BN → SE, + (downsampled) input, → ReLU.
    [N, in_channels, H, W] → [N, channels, ceil(H/stride), ceil(W/stride)].
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcitation(channels, reduction)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class SEResNet18(nn.Module):
    """SE-ResNet-18 trunk with a 3×3 stem for 1-channel spectrogram patches and a linear head.

    [N, 1, 20, 80] → stem [N, w, 10, 40] → layer1..4 (w, 2w, 4w, 8w channels at 10×40, 5×20, 3×10, 2×5)
    → average pool → linear → [N, out_features].
    """

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, out_features: int, width: int = 64, reduction: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.PReLU(width),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        in_channels = width
        for i, channels in enumerate(widths):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(
                SEBasicBlock(in_channels, channels, stride, reduction),
                SEBasicBlock(channels, channels, 1, reduction),
            )
            setattr(self, f"layer{i + 1}", layer)
            in_channels = channels
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.fc(x)


class AudioEncoder(nn.Module):
    """E_aud: per-frame mel window [N, 20, 80] (or [N, 1, 20, 80]) → audio styles a [N, num_ws, style_dim]."""

    def __init__(
        self,
        num_ws: int,
        style_dim: int,
        width: int = 64,
        reduction: int = 16,
        mel_shape: tuple[int, int] = (20, 80),
    ) -> None:
        super().__init__()
        self.num_ws = num_ws
        self.style_dim = style_dim
        self.mel_shape = mel_shape
        self.audio_encoder = SEResNet18(num_ws * style_dim, width, reduction)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.ndim == 3:
            mel = mel.unsqueeze(1)
        if mel.ndim != 4 or mel.shape[1] != 1 or tuple(mel.shape[2:]) != self.mel_shape:
            steps, bins = self.mel_shape
            raise ValueError(
                f"mel must be [N, {steps}, {bins}] or [N, 1, {steps}, {bins}], got {list(mel.shape)}"
            )
        return self.audio_encoder(mel).reshape(mel.shape[0], self.num_ws, self.style_dim)
