"""The assembled generator on small configs: training path, inference path, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stylelipsync.errors import CheckpointError
from stylelipsync.models import InferenceOutput, StyleLipSync, StyleLipSyncConfig


def stem_batches_tracked(model: StyleLipSync) -> torch.Tensor:
    bn = model.audio_encoder.audio_encoder.stem[1]
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.num_batches_tracked is not None
    return bn.num_batches_tracked


def make_model(resolution: int = 64, seed: int = 0) -> StyleLipSync:
    torch.manual_seed(seed)
    model = StyleLipSync(StyleLipSyncConfig.tiny(resolution))
    with torch.no_grad():  # non-trivial w_avg and noise strengths so that they are exercised
        model.w_avg.normal_()
        for name, p in model.synthesis.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return model


def video_inputs(frames: int, resolution: int = 64, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(frames, 3, resolution, resolution, generator=g) * 2 - 1
    mel = torch.randn(frames, 20, 80, generator=g) - 3
    ref = torch.rand(3, resolution, resolution, generator=g) * 2 - 1
    return x, mel, ref


@pytest.mark.parametrize("resolution", [64, 128])
def test_training_forward_backward(resolution: int) -> None:
    model = make_model(resolution).train()
    batch, frames = 2, 3
    x = torch.rand(batch, frames, 3, resolution, resolution) * 2 - 1
    mel = torch.randn(batch, frames, 20, 80)
    ref = torch.rand(batch, 1, 3, resolution, resolution) * 2 - 1
    x_hat = model(x, mel, ref)
    assert x_hat.shape == (batch, frames, 3, resolution, resolution)
    x_hat.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert stem_batches_tracked(model).item() == 1


def test_random_noise_varies_and_const_noise_is_deterministic() -> None:
    model = make_model().eval()
    x, mel, ref = video_inputs(2)
    args = (x[None], mel[None], ref[None, None])
    with torch.no_grad():
        a, b = model(*args), model(*args)
        c, d = model(*args, noise_mode="const"), model(*args, noise_mode="const")
    assert not torch.equal(a, b)
    assert torch.equal(c, d)


def test_infer_matches_training_path_and_is_chunk_invariant() -> None:
    model = make_model().eval()
    x, mel, ref = video_inputs(7)
    outputs = [model.infer(x, mel, ref, chunk_size=c) for c in (1, 3, 8)]
    assert outputs[0].shape == (7, 3, 64, 64)
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], rtol=0, atol=1e-5)
    with torch.no_grad():
        batched = model(x[None], mel[None], ref[None, None], noise_mode="const")[0]
    torch.testing.assert_close(outputs[2], batched, rtol=0, atol=1e-5)


def test_infer_styles_and_stages() -> None:
    model = make_model().train()
    x, mel, ref = video_inputs(4)
    out = model.infer(x, mel, ref[None], chunk_size=3, return_styles=True)
    assert isinstance(out, InferenceOutput)
    assert model.training  # infer restores the caller's mode
    model.eval()
    with torch.no_grad():
        w_ref = model.reference_styles(ref[None])[0]
        audio = model.audio_styles(mel)
        styles = model.mix_styles(audio, w_ref)
        x_hat = model.decode(styles, model.face_features(x))
    assert out.styles.audio_styles.shape == (4, 10, 64)
    assert out.styles.reference_styles.shape == (10, 64)
    torch.testing.assert_close(out.styles.audio_styles, audio)
    torch.testing.assert_close(out.styles.reference_styles, w_ref)
    torch.testing.assert_close(out.styles.styles, styles)
    torch.testing.assert_close(out.frames, x_hat, rtol=0, atol=1e-5)
    # w_avg enters additively
    with torch.no_grad():
        shifted = model.mix_styles(audio, w_ref) - model.w_avg
        model.w_avg.zero_()
        torch.testing.assert_close(model.mix_styles(audio, w_ref), shifted)


def test_single_frame_is_rejected() -> None:
    model = make_model().eval()
    x, mel, ref = video_inputs(1)
    with pytest.raises(ValueError, match="at least 2 frames"):
        model.infer(x, mel, ref)
    with pytest.raises(ValueError, match="at least 2 frames"):
        model.mix_styles(torch.zeros(1, 10, 64), torch.zeros(10, 64))


def test_bf16_autocast_on_cpu() -> None:
    model = make_model().eval()
    x, mel, ref = video_inputs(3)
    reference = model.infer(x, mel, ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.infer(x, mel, ref)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - reference).abs().max() < 0.1 * reference.abs().max()


def test_channels_last_gives_same_result() -> None:
    model = make_model().eval()
    x, mel, ref = video_inputs(3)
    expected = model.infer(x, mel, ref)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from the stubs
    out = model.infer(x.contiguous(memory_format=torch.channels_last), mel, ref)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_save_and_from_pretrained_round_trip(tmp_path: Path) -> None:
    model = make_model().eval()
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors"}
    loaded = StyleLipSync.from_pretrained(tmp_path / "m")
    assert not loaded.training
    assert loaded.config == model.config
    reference_state = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference_state[key]), key
    x, mel, ref = video_inputs(3)
    torch.testing.assert_close(loaded.infer(x, mel, ref), model.infer(x, mel, ref), rtol=0, atol=0)
    as_double = StyleLipSync.from_pretrained(tmp_path / "m", dtype=torch.float64)
    assert as_double.w_avg.dtype == torch.float64
    assert stem_batches_tracked(as_double).dtype == torch.int64


def test_from_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
        StyleLipSync.from_pretrained(tmp_path / "missing")
    make_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(StyleLipSyncConfig.tiny(128).to_dict()))
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: the config in config\.json and the weights don't match"
    ):
        StyleLipSync.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"resolution": 64, "bogus": 1}')
    with pytest.raises(CheckpointError, match="invalid model config"):
        StyleLipSync.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(StyleLipSyncConfig.tiny().to_dict()))
    (tmp_path / "m" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        StyleLipSync.from_pretrained(tmp_path / "m")
