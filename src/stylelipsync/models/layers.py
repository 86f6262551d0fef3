"""StyleGAN2 building blocks in pure PyTorch: FIR up-sampling, equalised linear layers, modulated convolution.

The numerics follow StyleGAN2-ADA's reference (non-CUDA) operators so that the official decoder weights
reproduce the official outputs: ``upfirdn2d`` semantics for the [1, 3, 3, 1] low-pass filter, the transposed
convolution + FIR scheme of ``conv2d_resample`` for 2× up-sampling, and weight (de)modulation with the
∞-norm pre-normalisation the official StyleLipSync code always applies (spec §2.6, numerical notes).

Inference kernels (``*_fast``): the same maths in channels-last layout with in-place epilogues. On CPU
they avoid what dominated the profile of the reference operators at 256²: the grouped convolution (5–10×
slower than a plain one in oneDNN), per-sample weight modulation of 512-channel kernels, the zero-insertion
FIR over a padded copy, and fresh full-size temporaries. Which of the two a module runs is its ``kernels``
setting (``KernelModule``): "reference", "fast" or "auto" (fast exactly when no autograd graph is built).
"""

from __future__ import annotations

import math
from typing import Literal, Self

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8
CHANNELS_LAST = torch.channels_last

Kernels = Literal["reference", "fast", "auto"]
KERNELS: tuple[str, ...] = ("reference", "fast", "auto")


def use_fast_kernels(kernels: Kernels) -> bool:
    """Whether a module set to ``kernels`` runs the fast inference kernels in the current autograd mode.

    "auto": exactly when no autograd graph is being built (``torch.is_grad_enabled()`` is False), so
    training gets the differentiable reference operators and inference the fast ones. "reference": never.
    "fast": always, and an error when a graph is being built: the fast kernels work in place and were never
    written or checked for backward, so a silent fallback would hide a slow path and gradients would be wrong.
    """
    if kernels == "auto":
        return not torch.is_grad_enabled()
    if kernels == "reference":
        return False
    if kernels != "fast":
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    if torch.is_grad_enabled():
        raise RuntimeError(
            "kernels='fast' but autograd is recording: the fast inference kernels compute in place and have "
            "no checked backward. Run the model under torch.no_grad() / torch.inference_mode(), or call "
            "model.set_kernels('auto') (fast without gradients, reference with) or set_kernels('reference')."
        )
    return True


class KernelModule(nn.Module):
    """A module with fast inference kernels next to the reference operators; ``kernels`` picks one.

    The setting is a plain attribute per module (``torch.compile`` guards on it without a graph break);
    ``set_kernels`` sets it on this module and every ``KernelModule`` below it, so a runner sets the whole
    network with one call. Default "auto" (see ``use_fast_kernels``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.kernels: Kernels = "auto"

    def set_kernels(self, kernels: Kernels) -> Self:
        """Choose the kernels of this module and all its sub-modules; returns self (for chaining)."""
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
        for module in self.modules():
            if isinstance(module, KernelModule):
                module.kernels = kernels
        return self

    def fast_kernels(self) -> bool:
        """True when this module runs its fast kernels now (its setting and the autograd mode)."""
        return use_fast_kernels(self.kernels)


def make_resample_filter(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """Separable 2-D FIR filter ``outer(taps, taps)`` normalised to sum 1: shape [k, k] (4×4 by default)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f2d = torch.outer(f, f)
    return f2d / f2d.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Up-sample by zero insertion, pad, then filter with a 2-D FIR kernel (StyleGAN2-ADA semantics).

    x: [N, C, H, W]; f: [kh, kw]; padding: (x_before, x_after, y_before, y_after), non-negative.
    The filter is scaled by ``gain`` (for a 2-D filter ADA multiplies by gain**(ndim/2) = gain) and applied
    as a true convolution (flipped; [1, 3, 3, 1] is symmetric anyway).
    Returns [N, C, H*up + py0 + py1 - kh + 1, W*up + px0 + px1 - kw + 1].
    """
    if min(padding) < 0:
        raise ValueError(f"upfirdn2d: negative padding {padding} is not supported")
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    if any(padding):
        x = F.pad(x, [px0, px1, py0, py1])
    kernel = (f * gain).flip([0, 1]).to(dtype=x.dtype)
    kernel = kernel[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, kernel, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR up-sampling by ``up`` keeping the image centred: [N, C, H, W] → [N, C, H*up, W*up].

    Padding ((k + up − 1)//2, (k − up)//2) = (2, 1) for the 4-tap filter; gain up² keeps the DC level.
    """
    kh, kw = f.shape
    px = ((kw + up - 1) // 2, (kw - up) // 2)
    py = ((kh + up - 1) // 2, (kh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=(px[0], px[1], py[0], py[1]), gain=float(up * up))


def conv2d_resample(
    x: torch.Tensor,
    weight: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution with optional 2× up-sampling, as in StyleGAN2-ADA's ``conv2d_resample`` (no down).

    x: [N, groups*I, H, W]; weight: [groups*O, I, k, k].
    up == 1: plain cross-correlation with zero padding ``padding`` → [N, groups*O, H + 2p − k + 1, ...].
    up == 2: transposed convolution with stride 2 (no padding) followed by the FIR filter ``f`` with gain 4
    and the padding that keeps the result aligned → [N, groups*O, 2H + 2p − k + 1, ...] (2H for k=3, p=1).
    """
    if up == 1:
        return F.conv2d(x, weight, padding=padding, groups=groups)
    if f is None:
        raise ValueError("conv2d_resample: up-sampling needs a resample filter")
    out_total, in_per_group, kh, kw = weight.shape
    fh, fw = f.shape
    px0 = padding + (fw + up - 1) // 2 - (kw - 1)
    px1 = padding + (fw - up) // 2 - (kw - up)
    py0 = padding + (fh + up - 1) // 2 - (kh - 1)
    py1 = padding + (fh - up) // 2 - (kh - up)
    out_per_group = out_total // groups
    w_t = weight.reshape(groups, out_per_group, in_per_group, kh, kw).transpose(1, 2)
    w_t = w_t.reshape(groups * in_per_group, out_per_group, kh, kw)
    x = F.conv_transpose2d(x, w_t, stride=up, groups=groups)
    return upfirdn2d(x, f, padding=(px0, px1, py0, py1), gain=float(up * up))


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution with per-sample styles.

    x: [B, I, H, W]; weight: [O, I, k, k] (raw, unscaled); styles: [B, I]; noise: broadcastable to the output.
    Modulation scales the input channels of the kernel by ``styles``; demodulation rescales each output
    channel's kernel to unit L2 norm (+1e-8). Before demodulating, weight and styles are divided by their
    ∞-norms (as the official code does) — the result is the same up to the epsilon, but it avoids overflow
    in low precision.
    ``fused=True`` runs one grouped convolution with per-sample kernels (inference path); ``fused=False``
    scales the activations instead and runs a shared-weight convolution (training path). Both agree.
    Returns [B, O, H', W'] (H' = 2H for ``up=2``, H for ``up=1`` with k=3, p=1).
    """
    batch = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate:
        weight = weight * (1.0 / math.sqrt(in_ch * kh * kw) / weight.abs().amax(dim=(1, 2, 3), keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
        if demodulate:
            dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + DEMOD_EPS).rsqrt()
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=(2, 3, 4)) + DEMOD_EPS).rsqrt()
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, batch * in_ch, *x.shape[2:])
    w = w.reshape(batch * out_ch, in_ch, kh, kw).to(x.dtype)
    x = conv2d_resample(x, w, resample_filter, up=up, padding=padding, groups=batch)
    x = x.reshape(batch, out_ch, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor in channels-last layout (no copy when it already is)."""
    return x.contiguous(memory_format=CHANNELS_LAST)


def _fir_weight(f: torch.Tensor, channels: int, gain: float, dtype: torch.dtype) -> torch.Tensor:
    """Depthwise kernel [channels, 1, kh, kw] applying the FIR ``f`` × ``gain`` as a true convolution."""
    kernel = (f * gain).flip([0, 1]).to(dtype)
    return kernel[None, None].expand(channels, 1, *f.shape).contiguous()


def upsample2d_fast(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """``upsample2d`` as one depthwise transposed convolution (no zero-inserted, padded copy).

    For the 4-tap filter and up = 2 the transposed convolution with stride 2 and padding 1 places each
    filter tap exactly where zero insertion + pad (2, 1) + correlation would; other filters fall back.
    """
    if up != 2 or tuple(f.shape) != (4, 4):
        return upsample2d(x, f, up)
    channels = x.shape[1]
    kernel = _fir_weight(f, channels, float(up * up), x.dtype).flip([2, 3])
    return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=channels)


def modulated_conv2d_fast(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    gain: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inference form of ``modulated_conv2d`` (no noise): returns (y, coef), the result being ``y`` times
    ``coef[B, O, 1, 1]`` (or ``y`` itself when coef is None), scaled by ``gain``.

    Same maths and ∞-norm pre-normalisation as the reference, in channels-last layout. The modulation goes
    where it is cheaper: into the kernel for a single sample whose kernel is smaller than its activation
    (coef is None, demodulation and gain folded into the kernel), else onto the activations of the whole
    batch with one shared-weight convolution, demodulation and gain returned as ``coef`` for the caller's
    in-place epilogue (``bias_lrelu_``). x: [B, I, H, W]; weight: [O, I, k, k]; styles: [B, I].
    """
    x = to_channels_last(x)
    batch, in_ch, height, width = x.shape
    out_ch, _, kh, kw = weight.shape
    dtype = x.dtype
    cdtype = torch.promote_types(weight.dtype, torch.float32)  # coefficients in at least float32
    styles = styles.to(cdtype)
    if demodulate:
        row_scale = (1.0 / math.sqrt(in_ch * kh * kw)) / weight.abs().amax(dim=(1, 2, 3)).to(cdtype)
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    else:
        row_scale = torch.ones(out_ch, device=weight.device, dtype=cdtype)
    if batch == 1 and out_ch * kh * kw <= height * width:
        scale = row_scale[:, None] * styles  # [O, I]: pre-normalisation × modulation
        if demodulate:
            wsq = weight.to(cdtype).square().sum(dim=(2, 3))
            scale = scale * ((scale.square() * wsq).sum(dim=1, keepdim=True) + DEMOD_EPS).rsqrt()
        w = (weight * (scale * gain).to(weight.dtype)[:, :, None, None]).to(dtype)
        return _conv_up(x, w, up, padding, resample_filter), None
    if demodulate:
        wsq = weight.to(cdtype).square().sum(dim=(2, 3)) * row_scale[:, None].square()  # [O, I]
        coef = row_scale * (styles.square() @ wsq.t() + DEMOD_EPS).rsqrt()
    else:
        coef = row_scale.expand(batch, out_ch)
    xs = x * styles.to(dtype)[:, :, None, None]
    return _conv_up(xs, weight.to(dtype), up, padding, resample_filter), coef * gain


def _conv_up(x: torch.Tensor, w: torch.Tensor, up: int, padding: int, f: torch.Tensor | None) -> torch.Tensor:
    """Plain convolution, or for up = 2 the transposed convolution + FIR of ``conv2d_resample`` with the FIR
    as one depthwise convolution (its padding folded into the convolution, no padded copy)."""
    if up == 1:
        return F.conv2d(x, w, padding=padding)
    if f is None:
        raise ValueError("modulated_conv2d_fast: up-sampling needs a resample filter")
    out_ch, _, kh, kw = w.shape
    fh, fw = f.shape
    px0 = padding + (fw + up - 1) // 2 - (kw - 1)
    px1 = padding + (fw - up) // 2 - (kw - up)
    py0 = padding + (fh + up - 1) // 2 - (kh - 1)
    py1 = padding + (fh - up) // 2 - (kh - up)
    y = F.conv_transpose2d(x, w.transpose(0, 1), stride=up)
    if px0 == px1 == py0 == py1 >= 0:
        return F.conv2d(y, _fir_weight(f, out_ch, float(up * up), y.dtype), padding=px0, groups=out_ch)
    return upfirdn2d(y, f, padding=(px0, px1, py0, py1), gain=float(up * up))


def bias_lrelu_(
    y: torch.Tensor,
    coef: torch.Tensor | None,
    noise: torch.Tensor | None,
    bias: torch.Tensor,
    gain: float = LRELU_GAIN,
) -> torch.Tensor:
    """In-place epilogue of ``modulated_conv2d_fast``: y ← lrelu(y·coef + gain·noise + gain·bias).

    ``modulated_conv2d_fast(..., gain=gain)`` returns gain × the modulated convolution, so this is
    gain · lrelu(conv + noise + bias): ``bias_lrelu`` of the reference result (leaky ReLU is positively
    homogeneous), without a temporary.
    """
    if coef is not None:
        y.mul_(coef.to(y.dtype)[:, :, None, None])
    if noise is not None:
        y.add_(noise.to(y.dtype), alpha=gain)
    y.add_(bias.to(y.dtype)[None, :, None, None], alpha=gain)
    return F.leaky_relu(y, LRELU_SLOPE, inplace=True)


def modulated_1x1_fast(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1×1 modulated convolution without demodulation (toRGB) as one batched matmul over channels-last pixels.

    x: [B, I, H, W]; weight: [O, I, 1, 1]; styles: [B, I] → [B, O, H, W] (channels-last).
    """
    x = to_channels_last(x)
    batch, in_ch, height, width = x.shape
    w = weight.reshape(1, -1, in_ch) * styles.reshape(batch, 1, in_ch).to(weight.dtype)  # [B, O, I]
    pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, in_ch)
    y = torch.bmm(pixels, w.transpose(1, 2).to(x.dtype))
    return y.reshape(batch, height, width, -1).permute(0, 3, 1, 2)


def bias_lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Add a per-channel bias, then leaky ReLU (slope 0.2) times √2: [B, C, H, W] → same."""
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: [N, in] → [N, out].

    The weight is stored as N(0, 1) / lr_multiplier and scaled at run time by lr_multiplier/√in, as in
    StyleGAN2-ADA, so official checkpoints (which store unscaled weights) load as they are. Style affines
    use ``bias_init=1`` so that the initial modulation is the identity.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        return F.linear(x, w.to(x.dtype), None if b is None else b.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
