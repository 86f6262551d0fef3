"""LPIPS (own VGG16 implementation, user-supplied weights), MS-SSIM fallback, SyncNet expert and GAN nets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylelipsync.errors import CheckpointError
from stylelipsync.losses.perceptual import LPIPS, PerceptualLoss, ms_ssim
from stylelipsync.models.syncnet import SyncNetConfig, SyncNetExpert
from stylelipsync.training.networks_stylegan2 import Discriminator, Generator
from stylelipsync.training.train_stylegan import StyleGANTrainConfig


def _lpips_package_state(model: LPIPS) -> dict[str, torch.Tensor]:
    """The key layout of a state dict saved from the reference lpips package (with its `lins` duplicates)."""
    state = {
        k: v if k.startswith("scaling_layer") else torch.randn_like(v) for k, v in model.state_dict().items()
    }
    for k in [k for k in state if k.startswith("lin")]:
        state["lins." + k[3:]] = state[k]
    return state


def test_lpips_loads_reference_and_torchvision_layouts(tmp_path: Path) -> None:
    ref = _lpips_package_state(LPIPS())
    torch.save(ref, tmp_path / "lpips.pth")
    a = LPIPS.from_file(tmp_path / "lpips.pth")
    assert torch.equal(getattr(a.net.slice3, "12").weight, ref["net.slice3.12.weight"])
    tv = {f"features.{k.split('.')[2]}.{k.split('.')[3]}": v for k, v in ref.items() if k.startswith("net.")}
    tv.update({k: v for k, v in ref.items() if k.startswith("lin")})
    tv["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(tv, tmp_path / "tv.pth")
    b = LPIPS.from_file(tmp_path / "tv.pth")
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(a(x, y), b(x, y))
    assert torch.allclose(a(x, x), torch.zeros(2), atol=1e-6)
    assert not any(p.requires_grad for p in a.parameters()) and not a.train().training


def test_perceptual_fallback_and_ms_ssim() -> None:
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.allclose(ms_ssim(x, x), torch.ones(3), atol=1e-4)
    assert bool((ms_ssim(x, y) < 0.95).all())
    loss = PerceptualLoss(None)
    assert loss.kind == "msssim_mouth_l1"
    mouth = torch.zeros(3, 1, 64, 64)
    mouth[..., 40:56, 20:44] = 1
    assert float(loss(x, x, mouth)) < 1e-3 < float(loss(y, x, mouth))


def test_syncnet_expert_shapes_and_persistence(tmp_path: Path) -> None:
    net = SyncNetExpert(SyncNetConfig.tiny()).eval()
    frames = torch.rand(3, 5, 3, 48, 48) * 2 - 1
    mel = torch.randn(3, 20, 80)
    assert net.lower_half(frames).shape == (3, 15, 16, 32)
    p = net(frames, mel)
    assert p.shape == (3,) and bool(((p > 0) & (p < 1)).all())
    cos = (net.embed_face(frames) * net.embed_audio(mel)).sum(1)
    assert torch.allclose(p, (cos + 1) / 2, atol=1e-5)
    net.save_pretrained(tmp_path / "sync")
    again = SyncNetExpert.from_pretrained(tmp_path / "sync")
    assert again.config == net.config and torch.allclose(again(frames, mel), p)
    with pytest.raises(CheckpointError):
        SyncNetExpert.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError):
        SyncNetConfig.from_dict({"face_size": 32, "unknown": 1})


def test_stylegan_networks_shapes() -> None:
    cfg = StyleGANTrainConfig.preset("tiny")
    g = Generator(cfg.model, cfg.mapping_layers)
    d = Discriminator(cfg.model.resolution, cfg.d_channel_base, cfg.d_channel_max, cfg.mbstd_group)
    img = g(torch.randn(6, g.z_dim), update_w_avg=True, style_mixing_prob=1.0)
    assert img.shape == (6, 3, 32, 32)
    assert float(g.mapping.w_avg.abs().sum()) > 0
    assert d(img).shape == (6, 1)
