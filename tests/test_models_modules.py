"""Config, parameter counts, MaLS, SaMF gates and the individual encoders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylelipsync.models import (
    AudioEncoder,
    FaceEncoder,
    MaLS,
    ReferenceEncoder,
    SaMF,
    StyleLipSync,
    StyleLipSyncConfig,
    SynthesisNetwork,
    moving_average,
)

PAPER_COUNTS = {
    "synthesis": 22_666_210,
    "audio_encoder": 14_931_968,
    "face_encoder": 9_912_582,
    "lip_encoder": 68_331_392,
    "mals": 22_034_432,
    "total": 137_876_584,
}


def test_paper_config_channels_and_styles() -> None:
    config = StyleLipSyncConfig.paper()
    assert config.channel_table == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert config.num_ws == 14
    assert StyleLipSyncConfig.tiny(64).num_ws == 10
    assert StyleLipSyncConfig.tiny(128).num_ws == 12


def test_config_json_round_trip(tmp_path) -> None:
    config = StyleLipSyncConfig.tiny(128)
    assert StyleLipSyncConfig.from_dict(config.to_dict()) == config
    config.to_json(tmp_path / "c.json")
    assert StyleLipSyncConfig.from_json(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown"):
        StyleLipSyncConfig.from_dict({**config.to_dict(), "resolutoin": 64})
    with pytest.raises(ValueError, match="power of two"):
        StyleLipSyncConfig(resolution=96)


def test_paper_parameter_counts() -> None:
    with torch.device("meta"):  # counting needs shapes only
        model = StyleLipSync(StyleLipSyncConfig.paper())
    assert model.parameter_counts() == PAPER_COUNTS
    assert sum(p.numel() for p in model.parameters()) == 137_876_584
    assert len([k for k in model.state_dict() if k != "w_avg"]) == 422


def test_moving_average_on_ramp() -> None:
    ramp = torch.arange(5.0).reshape(1, 1, 5)
    torch.testing.assert_close(moving_average(ramp), torch.tensor([[[0.25, 1.0, 2.0, 3.0, 3.75]]]))


def test_mals_composition_and_short_sequences() -> None:
    torch.manual_seed(0)
    mals = MaLS(8)
    u = torch.randn(2, 5, 8)
    conv_a, conv_b = mals.conv[0], mals.conv[2]
    assert isinstance(conv_a, torch.nn.Conv1d) and isinstance(conv_b, torch.nn.Conv1d)
    x = moving_average(u.transpose(1, 2))
    x = F.conv1d(F.pad(x, (1, 1), mode="reflect"), conv_a.weight, conv_a.bias)
    x = F.conv1d(F.pad(F.leaky_relu(x, 0.1), (1, 1), mode="reflect"), conv_b.weight, conv_b.bias)
    torch.testing.assert_close(mals(u), x.transpose(1, 2))
    assert mals(torch.randn(1, 2, 8)).shape == (1, 2, 8)
    with pytest.raises(ValueError, match="at least 2 frames"):
        mals(torch.randn(1, 1, 8))


def test_samf_gate_shape_and_range() -> None:
    torch.manual_seed(0)
    gate = SaMF(channels=16, style_dim=32, resolution=8).eval()
    feature = torch.randn(3, 16, 8, 8)
    s = gate(feature, torch.randn(3, 32))
    assert s.shape == (3, 1, 8, 8)
    assert bool(((s > 0) & (s < 1)).all())
    assert s.std() > 0  # a spatial map, not a constant
    gate.train()
    torch.testing.assert_close(gate(feature, torch.zeros(3, 32)), gate.eval()(feature, torch.zeros(3, 32)))
    assert {k for k, _ in gate.named_parameters()} == {"weight", "bias", "affine.weight", "affine.bias"}


def test_samf_blends_features_into_decoder() -> None:
    torch.manual_seed(0)
    config = StyleLipSyncConfig.tiny()
    synthesis = SynthesisNetwork(config.style_dim, config.resolution, config.channel_table).eval()
    face = FaceEncoder(config).eval()
    ws = torch.randn(2, config.num_ws, config.style_dim)
    features = face(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [(64, 4, 4), (64, 8, 8), (64, 16, 16), (64, 32, 32)]
    plain = synthesis(ws, noise_mode="const")
    fused = synthesis(ws, features, face.gates, noise_mode="const")
    assert plain.shape == fused.shape == (2, 3, 64, 64)
    assert not torch.allclose(plain, fused)


def test_encoder_output_shapes() -> None:
    config = StyleLipSyncConfig.tiny()
    audio = AudioEncoder(config.num_ws, config.style_dim, config.audio_channels, config.se_reduction).eval()
    assert audio(torch.randn(3, 20, 80)).shape == (3, 10, 64)
    with pytest.raises(ValueError, match="mel must be"):
        audio(torch.randn(3, 16, 80))
    reference = ReferenceEncoder(config)
    assert reference(torch.randn(2, 1, 3, 64, 64)).shape == (2, 10, 64)
