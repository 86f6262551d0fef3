"""StyleGAN2 networks used only to pre-train the decoder: mapping network (w_avg), ResNet discriminator.

The synthesis network is the project's own (``models.synthesis.SynthesisNetwork``), so the pre-trained
weights load straight into StyleLipSync. The discriminator follows StyleGAN2's "resnet" architecture:
FromRGB at full resolution, blocks of two 3×3 convolutions with a FIR-filtered 2× down-sampling and a 1×1
skip (both scaled by √½), then an epilogue with minibatch standard deviation, a 3×3 convolution and two
fully connected layers. All layers use equalised learning rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylelipsync.models.config import StyleLipSyncConfig
from stylelipsync.models.layers import FullyConnectedLayer, make_resample_filter, upfirdn2d
from stylelipsync.models.synthesis import NoiseMode, SynthesisNetwork

LRELU_GAIN = math.sqrt(2.0)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each latent to unit RMS."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [B, z_dim] → w broadcast to [B, num_ws, w_dim]; tracks ``w_avg`` (EMA of w) for StyleLipSync."""

    w_avg: torch.Tensor

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(dims[i], dims[i + 1], lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, update_w_avg: bool = False) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for i in range(self.num_layers):
            x = F.leaky_relu(getattr(self, f"fc{i}")(x), 0.2) * LRELU_GAIN
        if update_w_avg:
            self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return x.unsqueeze(1).repeat(1, self.num_ws, 1)


class Generator(nn.Module):
    """Mapping + the project's synthesis network (no SaMF features: the plain StyleGAN2 decoder)."""

    def __init__(self, config: StyleLipSyncConfig, mapping_layers: int = 2) -> None:
        super().__init__()
        self.config = config
        self.z_dim = config.style_dim
        self.synthesis = SynthesisNetwork(
            config.style_dim, config.resolution, config.channel_table, config.image_channels
        )
        self.mapping = MappingNetwork(
            config.style_dim, config.style_dim, self.synthesis.num_ws, mapping_layers
        )

    def forward(
        self,
        z: torch.Tensor,
        noise_mode: NoiseMode = "random",
        update_w_avg: bool = False,
        style_mixing_prob: float = 0.0,
    ) -> torch.Tensor:
        ws = self.mapping(z, update_w_avg=update_w_avg)
        if style_mixing_prob > 0:
            cutoff = int(torch.randint(1, ws.shape[1], ()).item())
            if torch.rand(()).item() < style_mixing_prob:
                ws = ws.clone()
                ws[:, cutoff:] = self.mapping(torch.randn_like(z))[:, cutoff:]
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=False)


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution with optional FIR 2× down-sampling and leaky-ReLU·√2 activation."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: bool = True,
        down: int = 1,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", make_resample_filter())

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        f = self.resample_filter
        if self.down == 2 and self.kernel_size == 1:
            x = upfirdn2d(x, f, padding=(1, 1, 1, 1))[:, :, ::2, ::2]
            x = F.conv2d(x, w)
        elif self.down == 2:
            p = (f.shape[0] - 2 + self.kernel_size - 1) // 2
            x = F.conv2d(upfirdn2d(x, f, padding=(p, p, p, p)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).view(1, -1, 1, 1)
        if self.activation:
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x * gain if gain != 1.0 else x


class DiscriminatorBlock(nn.Module):
    """Residual block halving the resolution: [B, in, R, R] → [B, out, R/2, R/2] (FromRGB on the first)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, down=2)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, activation=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None) -> torch.Tensor:
        if self.in_channels == 0:
            assert img is not None
            x = self.fromrgb(img)
        assert x is not None
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the per-group standard deviation of the features as extra channels."""

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4×4 features → minibatch-std → conv → fc → logit [B, 1]."""

    def __init__(self, in_channels: int, resolution: int = 4, mbstd_group_size: int = 4) -> None:
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, 1)
        self.conv = Conv2dLayer(in_channels + 1, in_channels, 3)
        self.fc = FullyConnectedLayer(in_channels * resolution * resolution, in_channels)
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.mbstd(x))
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2) * LRELU_GAIN
        return self.out(x)


class Discriminator(nn.Module):
    """ResNet discriminator: image [B, 3, R, R] in [−1, 1] → real/fake logit [B, 1]."""

    def __init__(
        self,
        resolution: int,
        channel_base: int = 16384,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        img_channels: int = 3,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        log2 = int(math.log2(resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]

        def ch(res: int) -> int:
            return min(channel_base // res, channel_max)

        for res in self.block_resolutions:
            in_ch = ch(res) if res < resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, ch(res), ch(res // 2), img_channels))
        self.b4 = DiscriminatorEpilogue(ch(4), 4, mbstd_group_size)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor | None = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        assert x is not None
        return self.b4(x)
