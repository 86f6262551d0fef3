"""Inference speed paths keep the numbers: fast kernels vs the reference operators, bf16 autocast against fp32
on the shipped model, and `torch.compile` with its fallback (issue #9)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylelipsync.errors import StyleLipSyncError
from stylelipsync.media import VideoReader
from stylelipsync.models import (
    InferenceRunner,
    StyleLipSync,
    StyleLipSyncConfig,
    cpu_has_native_bf16,
)
from stylelipsync.pipelines.lipsync import default_checkpoint

CPU = torch.device("cpu")
CLIP = "dreamtalk_M030_front_neutral_level1_001.mp4"  # 256², one frontal face filling the frame


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(resolution: int) -> StyleLipSync:
    torch.manual_seed(0)
    model = StyleLipSync(StyleLipSyncConfig.tiny(resolution)).eval()
    with torch.no_grad():
        model.w_avg.normal_()
        for name, p in model.synthesis.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return model


def video_inputs(frames: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(frames, 3, resolution, resolution, generator=g) * 2 - 1
    mel = torch.randn(frames, 20, 80, generator=g) - 3
    ref = torch.rand(3, resolution, resolution, generator=g) * 2 - 1
    return x, mel, ref


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two decoder outputs as 0..255 pixels (clamped like the pipeline's)."""
    x, y = ((t.clamp(-1, 1) + 1) * 127.5 for t in (a, b))
    mse = float((x - y).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@pytest.mark.parametrize("resolution", [64, 128])
def test_optimised_kernels_equal_the_reference_path(resolution: int) -> None:
    """Chunks of 4 (high-resolution blocks one sample at a time, activation-side modulation below) and of 1
    (kernel-side modulation): max abs difference ≤ 1e-4 (acceptance: 1e-3)."""
    model = make_model(resolution)
    x, mel, ref = video_inputs(5, resolution)
    expected = model.set_kernels("reference").infer(x, mel, ref, chunk_size=4)
    fast = model.set_kernels("fast").infer(x, mel, ref, chunk_size=4)
    single = model.infer(x, mel, ref, chunk_size=1)
    diffs = [float((out - expected).abs().max()) for out in (fast, single)]
    print(f"{resolution}²: fast vs reference max abs diff {diffs}")
    assert max(diffs) <= 1e-4


def real_masked_crops(media_dir: Path, frames: int, resolution: int) -> torch.Tensor:
    """Real face frames at the model's resolution in [-1, 1], lower half masked out as `generate` does."""
    images = [f.image for _, f in zip(range(frames), VideoReader(media_dir / CLIP), strict=False)]
    x = torch.as_tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(resolution, resolution), mode="area")
    x[:, :, resolution // 2 :] = 0
    return x / 127.5 - 1


def test_bf16_autocast_keeps_the_shipped_models_crops(media_dir: Path) -> None:
    """The shipped (trained) 128² model on real masked face crops: bf16 autocast of the face encoder and
    decoder (as `--precision bf16` runs them) against fp32, PSNR ≥ 35 dB (issue #9)."""
    model = StyleLipSync.from_pretrained(default_checkpoint())
    res = model.config.resolution
    x = real_masked_crops(media_dir, 3, res)
    ref = (x[0] + 0).clone()
    mel = torch.randn(3, 20, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        styles = model.compute_styles(mel, ref).styles
    full = InferenceRunner(model, CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "no native bf16" on AVX2-only CPUs
        low = InferenceRunner(model, CPU, precision="bf16")
    with torch.no_grad():
        expected = full.decode(styles, full.face_features(x))
        out = low.decode(styles, low.face_features(x))
    assert out.dtype == torch.float32
    value = psnr(out, expected)
    print(f"bf16 vs fp32 PSNR on the shipped model's crops: {value:.1f} dB")
    assert value >= 35


def test_precision_choices_and_errors() -> None:
    model = make_model(64)
    with pytest.raises(StyleLipSyncError, match=r"fp16 needs a CUDA GPU.*bf16 or fp32"):
        InferenceRunner(model, CPU, precision="fp16")
    with pytest.raises(StyleLipSyncError, match="unknown precision 'fp8'"):
        InferenceRunner(model, CPU, precision="fp8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = InferenceRunner(model, CPU, precision="bf16")
    assert runner.dtype == torch.bfloat16
    slow_warning = [w for w in caught if "no native bf16" in str(w.message)]
    assert bool(slow_warning) == (not cpu_has_native_bf16())


def decode_twice(runner: InferenceRunner, model: StyleLipSync) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂ of the same 2 frames through `runner` (twice: the second call reuses the compiled graph)."""
    x, mel, ref = video_inputs(2, model.config.resolution)
    with torch.no_grad():
        styles = model.compute_styles(mel, ref).styles
        first = runner.decode(styles, runner.face_features(x))
        second = runner.decode(styles, runner.face_features(x))
    return first, second


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compile error (here: no C++ compiler) warns once and the run continues in eager mode."""

    def broken_compile(fn: Any, **_: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("InductorError: no C++ compiler found")

        return run

    model = make_model(64)
    eager = decode_twice(InferenceRunner(model, CPU), model)
    monkeypatch.setattr(torch, "compile", broken_compile)
    runner = InferenceRunner(model, CPU, compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = decode_twice(runner, model)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2  # once per compiled stage, not once per call
    for stage, message in zip(("face encoder", "decoder"), messages, strict=True):
        assert f"torch.compile of the {stage} failed" in message and "no C++ compiler" in message
    for a, b in zip(out, eager, strict=True):
        assert torch.equal(a, b)


def test_compile_traces_the_fast_kernels_without_breaking() -> None:
    """TorchDynamo captures the face encoder and decoder (the `eager` backend: tracing without code
    generation, so the test needs no C++ compiler) and gives the same frames."""
    import torch._dynamo

    torch._dynamo.reset()
    model = make_model(64)
    expected = decode_twice(InferenceRunner(model, CPU), model)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        out = decode_twice(InferenceRunner(model, CPU, compile="eager"), model)
    for frames in out:
        torch.testing.assert_close(frames, expected, rtol=0, atol=1e-5)
