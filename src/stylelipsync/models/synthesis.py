"""Decoder G: the StyleGAN2 synthesis network ("skip" architecture) with SaMF feature fusion (spec §2.6–2.7).

Module and buffer names follow the official checkpoint (``synthesis.b{R}.conv0.affine.weight`` …), so the
official state dict loads without a key map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import torch
from torch import nn

from .layers import (
    LRELU_GAIN,
    FullyConnectedLayer,
    KernelModule,
    bias_lrelu,
    bias_lrelu_,
    make_resample_filter,
    modulated_1x1_fast,
    modulated_conv2d,
    modulated_conv2d_fast,
    upsample2d,
    upsample2d_fast,
)

NoiseMode = Literal["random", "const", "none"]
NOISE_MODES: tuple[str, ...] = ("random", "const", "none")
CPU_SPLIT_RESOLUTION = 64
"""On CPU the inference kernels run blocks from this resolution up one sample at a time: each temporary then
fits the allocator's reuse limit (fresh 100 MB+ buffers cost more in page faults than the convolution
itself) and single-sample layers can modulate their kernels instead of their activations."""


class GateModule(Protocol):
    """A SaMF gate: (feature [B, C, h, h], style [B, D]) → gate [B, 1, h, h] in (0, 1)."""

    def __call__(self, feature: torch.Tensor, w: torch.Tensor) -> torch.Tensor: ...


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


class SynthesisLayer(KernelModule):
    """Modulated 3×3 convolution (optionally 2× up-sampling) + noise + bias + leaky ReLU·√2.

    x: [B, in_channels, R/up, R/up], w: [B, w_dim] → [B, out_channels, R, R].
    ``use_noise=False`` drops the noise input and its parameters (used by the SaMF gates).
    ``fused_modconv`` only matters with the reference kernels (``kernels``, see ``KernelModule``): grouped
    convolution (True) or modulated activations (False); None = grouped in eval mode, not in training mode.
    """

    resample_filter: torch.Tensor
    noise_const: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.register_buffer("resample_filter", make_resample_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def _noise(self, x: torch.Tensor, noise_mode: str) -> torch.Tensor | None:
        if not self.use_noise or noise_mode == "none":
            return None
        if noise_mode == "const":
            return self.noise_const * self.noise_strength
        shape = (x.shape[0], 1, self.resolution, self.resolution)
        return torch.randn(shape, device=x.device, dtype=x.dtype) * self.noise_strength

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode = "random",
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        _check_noise_mode(noise_mode)
        styles = self.affine(w)
        if self.fast_kernels():
            y, coef = modulated_conv2d_fast(
                x,
                self.weight,
                styles,
                up=self.up,
                padding=self.padding,
                resample_filter=self.resample_filter,
                gain=LRELU_GAIN,
            )
            return bias_lrelu_(y, coef, self._noise(y, noise_mode), self.bias)
        fused = (not self.training) if fused_modconv is None else fused_modconv
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=self._noise(x, noise_mode),
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            fused=fused,
        )
        return bias_lrelu(x, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"resolution={self.resolution}, up={self.up}, use_noise={self.use_noise}"
        )


class ToRGBLayer(KernelModule):
    """Modulated 1×1 convolution to RGB, without demodulation, plus bias (linear output).

    x: [B, in_channels, R, R], w: [B, w_dim] → [B, out_channels, R, R].
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / (in_channels * kernel_size * kernel_size) ** 0.5

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        if self.fast_kernels() and self.weight.shape[-1] == 1:
            y = modulated_1x1_fast(x, self.weight, styles)
            return y.add_(self.bias.to(y.dtype).reshape(1, -1, 1, 1))
        fused = (not self.training) if fused_modconv is None else fused_modconv
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class SynthesisBlock(KernelModule):
    """One decoder resolution: [SaMF blend →] conv0 (up×2) → conv1 → toRGB added to the up-sampled image.

    b4 (``in_channels == 0``) starts from a learned constant [C, 4, 4] and has no conv0.
    Inputs: x [B, in_channels, R/2, R/2] (None for b4), img [B, 3, R/2, R/2] (None for b4),
    ws [B, num_conv + 1, w_dim] (conv0, conv1, toRGB styles; b4: conv1, toRGB).
    SaMF (spec §2.7): with a face feature F [B, in_channels, R/2, R/2] and its gate, x ← S⊙F + (1−S)⊙x with
    S = gate(F, w_conv0) ∈ (0, 1)^[B, 1, R/2, R/2].
    Outputs: x [B, out_channels, R, R], img [B, 3, R, R].
    """

    resample_filter: torch.Tensor

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int = 3
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.register_buffer("resample_filter", make_resample_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        feature: torch.Tensor | None = None,
        gate: GateModule | None = None,
        noise_mode: NoiseMode = "random",
        fused_modconv: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        fast = self.fast_kernels()
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, next(w_iter), noise_mode, fused_modconv)
        else:
            if x is None:
                raise ValueError(f"b{self.resolution}: missing input activation")
            w0 = next(w_iter)
            if feature is not None:
                if gate is None:
                    raise ValueError(f"b{self.resolution}: a face feature needs its SaMF gate")
                s = gate(feature, w0)
                x = torch.lerp(x, feature.to(x.dtype), s.to(x.dtype)) if fast else s * feature + (1.0 - s) * x
            x = self.conv0(x, w0, noise_mode, fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode, fused_modconv)
        y = self.torgb(x, next(w_iter), fused_modconv)
        if img is None:
            return x, y
        if fast:
            return x, y.add_(upsample2d_fast(img, self.resample_filter).to(y.dtype))
        return x, upsample2d(img, self.resample_filter.to(img.dtype)) + y

    def extra_repr(self) -> str:
        return (
            f"resolution={self.resolution}, in_channels={self.in_channels}, out_channels={self.out_channels}"
        )


class SynthesisNetwork(KernelModule):
    """StyleGAN2 synthesis network, skip architecture, no mapping network.

    ws [B, num_ws, w_dim] → image [B, img_channels, R, R] (not clamped). Blocks: attributes ``b4`` … ``bR``.
    ``features``/``gates``: one entry per block above b4, coarsest first (b8 gets the 4×4 feature); a ``None``
    feature skips SaMF for that block, and ``features=None`` gives the plain StyleGAN2 decoder.
    ``set_kernels`` chooses reference operators or fast inference kernels for all blocks (``KernelModule``);
    ``fused_modconv`` picks a variant of the reference ones (``SynthesisLayer``).
    """

    def __init__(
        self, w_dim: int, img_resolution: int, channel_table: dict[int, int], img_channels: int = 3
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, img_resolution.bit_length())]
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channel_table[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_channels, channel_table[res], w_dim, res, img_channels)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks from b4 up to the output resolution."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(
        self,
        ws: torch.Tensor,
        features: Sequence[torch.Tensor | None] | None = None,
        gates: Sequence[GateModule] | None = None,
        noise_mode: NoiseMode = "random",
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        _check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        n_fused = len(self.block_resolutions) - 1
        if features is not None and len(features) != n_fused:
            raise ValueError(
                f"expected {n_fused} face features (b8…b{self.img_resolution}), got {len(features)}"
            )
        if features is not None and (gates is None or len(gates) != n_fused):
            raise ValueError(f"expected {n_fused} SaMF gates alongside the face features")
        blocks = self.blocks()
        calls = []
        w_idx = 0
        for i, block in enumerate(blocks):
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            feature = features[i - 1] if features is not None and i > 0 else None
            gate = gates[i - 1] if gates is not None and i > 0 else None
            calls.append((block, block_ws, feature, gate))
        split = len(calls)
        if self.fast_kernels() and ws.device.type == "cpu" and ws.shape[0] > 1:
            split = next((i for i, b in enumerate(blocks) if b.resolution >= CPU_SPLIT_RESOLUTION), split)
        x, img = self._run(calls[:split], None, None, slice(None), noise_mode, fused_modconv)
        if split < len(calls):
            images: list[torch.Tensor] = []
            for n in range(ws.shape[0]):
                one = slice(n, n + 1)
                xn = None if x is None else x[one]
                imgn = None if img is None else img[one]
                img_n = self._run(calls[split:], xn, imgn, one, noise_mode, fused_modconv)[1]
                assert img_n is not None
                images.append(img_n)
            img = torch.cat(images)
        assert img is not None
        return img

    @staticmethod
    def _run(
        calls: list[tuple[SynthesisBlock, torch.Tensor, torch.Tensor | None, GateModule | None]],
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        rows: slice,
        noise_mode: NoiseMode,
        fused_modconv: bool | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Run consecutive blocks on the samples ``rows`` of their styles and features."""
        for block, block_ws, feature, gate in calls:
            feat = None if feature is None else feature[rows]
            x, img = block(x, img, block_ws[rows], feat, gate, noise_mode, fused_modconv)
        return x, img
