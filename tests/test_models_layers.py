"""StyleGAN2 operators against direct, independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylelipsync.models.blocks import instance_norm_relu_
from stylelipsync.models.layers import (
    LRELU_GAIN,
    FullyConnectedLayer,
    bias_lrelu,
    bias_lrelu_,
    conv2d_resample,
    make_resample_filter,
    modulated_1x1_fast,
    modulated_conv2d,
    modulated_conv2d_fast,
    upsample2d,
    upsample2d_fast,
    use_fast_kernels,
)

FIR = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0]) / 64.0


def numpy_fir_upsample(x: np.ndarray) -> np.ndarray:
    """2× FIR up-sampling by hand: zero insertion, pad (2, 1), 4×4 correlation with 4·FIR."""
    h, w = x.shape
    z = np.zeros((2 * h, 2 * w))
    z[::2, ::2] = x
    z = np.pad(z, ((2, 1), (2, 1)))
    k = 4.0 * FIR[::-1, ::-1]
    out = np.zeros((2 * h, 2 * w))
    for p in range(2 * h):
        for q in range(2 * w):
            out[p, q] = np.sum(z[p : p + 4, q : q + 4] * k)
    return out


def test_resample_filter_is_normalised_outer_product() -> None:
    np.testing.assert_allclose(make_resample_filter().numpy(), FIR, rtol=0, atol=0)


def test_fir_upsample_matches_numpy() -> None:
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = upsample2d(x, make_resample_filter().double())
    assert y.shape == (2, 3, 10, 14)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[n, c].numpy(), numpy_fir_upsample(x[n, c].numpy()), atol=1e-12)


def test_fir_upsample_impulse_and_constant_response() -> None:
    x = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    x[0, 0, 3, 2] = 1.0
    y = upsample2d(x, make_resample_filter().double())[0, 0].numpy()
    expected = np.zeros((12, 12))
    expected[5:9, 3:7] = 4.0 * FIR  # rows 2i-1 … 2i+2, columns 2j-1 … 2j+2
    np.testing.assert_allclose(y, expected, atol=1e-15)
    ones = upsample2d(torch.ones(1, 1, 8, 8, dtype=torch.float64), make_resample_filter().double())
    np.testing.assert_allclose(ones[0, 0, 2:-2, 2:-2].numpy(), 1.0, atol=1e-12)  # unit DC gain inside


def reference_up_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """ADA's conv0 written out: zero insertion, full convolution with the kernel, FIR (gain 4, pad 1)."""
    n, c, h, wd = x.shape
    z = torch.zeros(n, c, 2 * h, 2 * wd, dtype=x.dtype)
    z[..., ::2, ::2] = x
    y = F.conv2d(F.pad(z, [2, 1, 2, 1]), w.flip([2, 3]))
    fir = (4.0 * torch.from_numpy(FIR)).to(x.dtype)[None, None].repeat(y.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(y, [1, 1, 1, 1]), fir, groups=y.shape[1])


def reference_modulated_conv(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int, demodulate: bool
) -> torch.Tensor:
    """Per-sample modulate → demodulate → convolve, one sample at a time."""
    outputs = []
    for b in range(x.shape[0]):
        w = weight * styles[b].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True))
        xb = x[b : b + 1]
        if up == 2:
            outputs.append(reference_up_conv(xb, w))
        else:
            outputs.append(F.conv2d(xb, w, padding=weight.shape[-1] // 2))
    return torch.cat(outputs)


@pytest.mark.parametrize(
    ("up", "k", "demodulate"),
    [(1, 3, True), (2, 3, True), (1, 3, False), (2, 3, False), (1, 1, False)],
    ids=["conv1", "conv0-up", "conv-nodemod", "up-nodemod", "torgb"],
)
def test_modulated_conv_matches_per_sample_reference(up: int, k: int, demodulate: bool) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, k, k, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64) + 1.0
    expected = reference_modulated_conv(x, weight, styles, up, demodulate)
    f = make_resample_filter().double()
    pad = k // 2
    fused = modulated_conv2d(x, weight, styles, up=up, padding=pad, resample_filter=f, demodulate=demodulate)
    split = modulated_conv2d(
        x, weight, styles, up=up, padding=pad, resample_filter=f, demodulate=demodulate, fused=False
    )
    assert fused.shape == expected.shape == (3, 4, 6 * up, 6 * up)
    # The 1e-8 demodulation epsilon (applied after ∞-norm pre-normalisation) is the only difference.
    torch.testing.assert_close(fused, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(split, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fused, split, rtol=1e-12, atol=1e-12)


def test_modulated_conv_adds_noise_after_demodulation() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 4, generator=g)
    weight = torch.randn(2, 3, 3, 3, generator=g)
    styles = torch.rand(2, 3, generator=g) + 0.5
    noise = torch.randn(2, 1, 4, 4, generator=g)
    for fused in (True, False):
        base = modulated_conv2d(x, weight, styles, padding=1, fused=fused)
        noisy = modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused=fused)
        torch.testing.assert_close(noisy - base, noise.expand_as(base), rtol=1e-5, atol=1e-5)


def test_conv2d_resample_up_grouped_matches_ungrouped() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(2, 4, 3, 3, 3, generator=g, dtype=torch.float64)
    f = make_resample_filter().double()
    grouped = conv2d_resample(x.reshape(1, 6, 5, 5), w.reshape(8, 3, 3, 3), f, up=2, padding=1, groups=2)
    separate = torch.cat([conv2d_resample(x[i : i + 1], w[i], f, up=2, padding=1) for i in range(2)])
    torch.testing.assert_close(grouped.reshape(2, 4, 10, 10), separate)
    torch.testing.assert_close(separate, torch.cat([reference_up_conv(x[i : i + 1], w[i]) for i in range(2)]))


def test_fully_connected_layer_runtime_gain() -> None:
    layer = FullyConnectedLayer(16, 8, bias_init=1.0)
    assert layer.bias is not None
    assert torch.equal(layer.bias, torch.ones(8))
    x = torch.randn(4, 16)
    expected = x @ (layer.weight / math.sqrt(16)).t() + 1.0
    torch.testing.assert_close(layer(x), expected)


# ------------------------------------------------------------------------- inference kernels (fast path)


@pytest.mark.parametrize("batch", [1, 3], ids=["kernel-side", "activation-side"])
@pytest.mark.parametrize("up", [1, 2])
def test_fast_modulated_conv_with_epilogue_matches_reference(batch: int, up: int) -> None:
    """modulated_conv2d_fast + bias_lrelu_ = modulated_conv2d + bias_lrelu, noise included, both modulation
    placements (one sample with a kernel smaller than its activation modulates the kernel)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(batch, 6, 8, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 6, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(batch, 6, generator=g, dtype=torch.float64) + 1.0
    noise = torch.randn(8 * up, 8 * up, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64)
    f = make_resample_filter().double()
    expected = bias_lrelu(
        modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1, resample_filter=f), bias
    )
    y, coef = modulated_conv2d_fast(x, weight, styles, up=up, padding=1, resample_filter=f, gain=LRELU_GAIN)
    assert (coef is None) == (batch == 1)
    out = bias_lrelu_(y, coef, noise, bias)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_fast_upsample_and_1x1_match_reference() -> None:
    g = torch.Generator().manual_seed(8)
    f = make_resample_filter().double()
    img = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(upsample2d_fast(img, f), upsample2d(img, f), rtol=0, atol=1e-12)
    x = torch.randn(2, 6, 4, 4, generator=g, dtype=torch.float64)
    weight = torch.randn(3, 6, 1, 1, generator=g, dtype=torch.float64)
    styles = torch.randn(2, 6, generator=g, dtype=torch.float64)
    expected = modulated_conv2d(x, weight, styles, demodulate=False)
    torch.testing.assert_close(modulated_1x1_fast(x, weight, styles), expected, rtol=1e-12, atol=1e-12)


def test_in_place_instance_norm_matches_the_module() -> None:
    """Blocked two-pass variance, even with a mean far from zero and rows split over several blocks."""
    g = torch.Generator().manual_seed(9)
    x = (torch.randn(2, 4, 300, 7, generator=g) * 0.5 + 20.0).contiguous(memory_format=torch.channels_last)
    norm = torch.nn.InstanceNorm2d(4, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
        expected = F.relu(norm(x.contiguous()))
        y = x.clone(memory_format=torch.channels_last)
        out = instance_norm_relu_(y, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_kernel_setting_against_the_autograd_mode() -> None:
    """auto = fast exactly without a graph; reference never; fast refuses a graph instead of falling back."""
    assert not use_fast_kernels("auto")  # tests build graphs by default
    assert not use_fast_kernels("reference")
    with pytest.raises(RuntimeError, match=r"kernels='fast' but autograd is recording.*torch\.no_grad"):
        use_fast_kernels("fast")
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            assert use_fast_kernels("auto") and use_fast_kernels("fast")
            assert not use_fast_kernels("reference")
    with pytest.raises(ValueError, match="kernels must be one of"):
        use_fast_kernels("fsat")  # type: ignore[arg-type]
