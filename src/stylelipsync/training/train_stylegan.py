"""StyleGAN2 decoder pre-training (``stylelipsync train-stylegan``), spec §4.5.

Non-saturating logistic loss, lazy R1 on reals (every ``r1_interval`` steps, with StyleGAN2's Adam
correction for lazy regularisation), optional path-length regularisation and style mixing, and an EMA copy
of the generator. The export holds the EMA synthesis network and the mapping network's ``w_avg`` in the
project's format (``decoder.safetensors`` + ``config.json``), which ``load_decoder`` puts into a StyleLipSync
model. ADA augmentation is not implemented.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F

from stylelipsync.errors import CheckpointError
from stylelipsync.models.config import StyleLipSyncConfig
from stylelipsync.models.stylelipsync import StyleLipSync
from stylelipsync.training.config import TrainerConfig
from stylelipsync.training.dataset import ClipInfo, DataConfig, FrameDataset, read_manifest, split_by_person
from stylelipsync.training.networks_stylegan2 import Discriminator, Generator
from stylelipsync.training.trainer import Batch, Trainer, TrainingTask

DECODER_FILE = "decoder.safetensors"
CONFIG_FILE = "config.json"
SYNTHESIS_FIELDS = (
    "resolution",
    "style_dim",
    "channel_base",
    "channel_max",
    "channel_multiplier",
    "image_channels",
)


@dataclass
class StyleGANTrainConfig:
    """Everything ``train-stylegan`` needs (YAML-loadable). ``model`` must equal the StyleLipSync config.

    The ``paper`` defaults follow StyleGAN2-ADA's "paper256" on 8 processes: 8 images per process (64 in
    total), 400k steps ≈ 25,600 kimg, lr 0.0025, R1 γ = 1, minibatch-std group 8, G EMA 20 kimg, 8 mapping
    layers (only w_avg is used by StyleLipSync), path-length regularisation 2, style mixing 0.9.
    """

    model: StyleLipSyncConfig = field(default_factory=StyleLipSyncConfig.paper)
    data: DataConfig = field(default_factory=lambda: DataConfig(color_jitter=0.0))
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            steps=400_000, batch_size=8, image_every=2_000, val_every=0, checkpoint_every=5_000
        )
    )
    mapping_layers: int = 8
    d_channel_base: int = 16384
    d_channel_max: int = 512
    mbstd_group: int = 8
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 1.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    ema_kimg: float = 20.0
    ema_rampup: float = 0.0

    @classmethod
    def preset(cls, name: str) -> StyleGANTrainConfig:
        """``paper`` (256², ADA paper256-like), ``small`` (128², CPU-sized) or ``tiny`` (32², tests)."""
        if name == "paper":
            return cls()
        if name == "small":
            model = StyleLipSyncConfig(resolution=128, style_dim=256, channel_base=8192, channel_max=256)
            return cls(
                model=model,
                trainer=TrainerConfig(
                    steps=50_000, batch_size=8, image_every=1_000, val_every=0, checkpoint_every=1_000
                ),
                mapping_layers=2,
                d_channel_base=8192,
                d_channel_max=256,
                g_lr=0.002,
                d_lr=0.002,
                r1_gamma=0.5,
                pl_weight=0.0,
                style_mixing=0.0,
                ema_kimg=5.0,
                ema_rampup=0.05,
            )
        if name == "tiny":
            model = StyleLipSyncConfig.tiny(resolution=32)
            return cls(
                model=model,
                trainer=TrainerConfig(
                    steps=20,
                    batch_size=4,
                    num_workers=0,
                    torch_threads=1,
                    log_every=5,
                    image_every=0,
                    val_every=0,
                    checkpoint_every=10,
                ),
                mapping_layers=2,
                d_channel_base=512,
                d_channel_max=32,
                g_lr=0.002,
                d_lr=0.002,
                r1_gamma=0.1,
                r1_interval=4,
                pl_weight=0.0,
                style_mixing=0.0,
                ema_kimg=0.1,
                ema_rampup=0.0,
            )
        raise ValueError(f"unknown StyleGAN preset {name!r}; choose tiny, small or paper")


def _lazy_adam(params: Any, lr: float, betas: tuple[float, float], interval: int) -> torch.optim.Adam:
    """Adam with StyleGAN2's lazy-regularisation correction of lr and betas."""
    ratio = interval / (interval + 1) if interval > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=1e-8)


class StyleGANTask(TrainingTask):
    """Trains Generator (mapping + synthesis) against a ResNet Discriminator; keeps ``G_ema``."""

    name = "stylegan"

    def __init__(self, config: StyleGANTrainConfig) -> None:
        self.config = config
        self._split: tuple[list[ClipInfo], list[ClipInfo]] | None = None

    def build(self, trainer: Trainer) -> None:
        cfg = self.config
        self.trainer = trainer
        device = trainer.device
        self.G = Generator(cfg.model, cfg.mapping_layers).to(device)
        self.G.synthesis.set_kernels("reference")  # samples too: the operators it was trained with
        self.D = Discriminator(
            cfg.model.resolution,
            cfg.d_channel_base,
            cfg.d_channel_max,
            cfg.mbstd_group,
            cfg.model.image_channels,
        ).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.pl_state = _PathLengthState().to(device)
        g_interval = cfg.pl_interval if cfg.pl_weight > 0 else 0
        self.opt_g = _lazy_adam(self.G.parameters(), cfg.g_lr, cfg.betas, g_interval)
        self.opt_d = _lazy_adam(
            self.D.parameters(), cfg.d_lr, cfg.betas, cfg.r1_interval if cfg.r1_gamma > 0 else 0
        )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "pl_state": self.pl_state}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d}

    def train_dataset(self) -> FrameDataset:
        d = self.config.data
        if self._split is None:
            self._split = split_by_person(
                read_manifest(d.dataset), d.val_persons, d.n_val_persons, d.split_seed
            )
        data_cfg = dataclasses.replace(d, resolution=self.config.model.resolution)
        return FrameDataset(self._split[0], data_cfg, augment=True)

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.G.z_dim, device=self.trainer.device)

    def train_step(self, batches: list[Batch], step: int) -> dict[str, float]:
        cfg = self.config
        logs: dict[str, float] = {}
        self.G.train()
        self.D.train()

        # Gmain: make D classify fakes as real.
        self.D.requires_grad_(False)
        self.G.requires_grad_(True)

        def g_main(b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            img = self.G(self._z(b["image"].shape[0]), update_w_avg=True, style_mixing_prob=cfg.style_mixing)
            logits = self.D(img).float()
            loss = F.softplus(-logits).mean()
            return loss, {"loss_G": loss.detach(), "score_fake": logits.detach().mean()}

        logs.update(self.trainer.optimize("G", g_main, batches))
        if cfg.pl_weight > 0 and step % cfg.pl_interval == 0:
            logs.update(self.trainer.optimize("G", self._path_length, batches))

        # Dmain: fakes → 0, reals → 1; lazy R1 on reals in its own step.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)

        def d_main(b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            with torch.no_grad():
                fake = self.G(self._z(b["image"].shape[0]), style_mixing_prob=cfg.style_mixing)
            fake_logits = self.D(fake).float()
            real_logits = self.D(b["image"]).float()
            loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
            return loss, {"loss_D": loss.detach(), "score_real": real_logits.detach().mean()}

        logs.update(self.trainer.optimize("D", d_main, batches))
        if cfg.r1_gamma > 0 and step % cfg.r1_interval == 0:
            logs.update(self.trainer.optimize("D", self._r1, batches))
        self._update_ema(step)
        return logs

    def _r1(self, b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        real = b["image"].detach().requires_grad_(True)
        logits = self.D(real).float()
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grad.float().square().sum(dim=(1, 2, 3))
        loss = (penalty * (self.config.r1_gamma / 2)).mean() * self.config.r1_interval + logits.mean() * 0
        return loss, {"r1_penalty": penalty.detach().mean()}

    def _path_length(self, b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        n = max(1, b["image"].shape[0] // cfg.pl_batch_shrink)
        ws = self.G.mapping(self._z(n))
        ws.requires_grad_(True)
        img = self.G.synthesis(ws, noise_mode="random", fused_modconv=False)
        noise = torch.randn_like(img) / (img.shape[2] * img.shape[3]) ** 0.5
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(dim=2).mean(dim=1).sqrt()
        mean = self.pl_state.pl_mean.lerp(lengths.detach().mean(), cfg.pl_decay)
        self.pl_state.pl_mean.copy_(mean.detach())
        penalty = (lengths - mean).square()
        loss = penalty.mean() * cfg.pl_weight * cfg.pl_interval + img[:, 0, 0, 0].mean() * 0
        return loss, {"pl_penalty": penalty.detach().mean()}

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        cfg = self.config
        t = cfg.trainer
        batch_total = t.batch_size * t.grad_accum * self.trainer.world_size
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup > 0:
            ema_nimg = min(ema_nimg, (step + 1) * batch_total * cfg.ema_rampup)
        beta = 0.5 ** (batch_total / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    def images(self, step: int) -> dict[str, torch.Tensor]:
        z = torch.randn(16, self.G.z_dim, generator=torch.Generator().manual_seed(0)).to(self.trainer.device)
        return {"samples_ema": self.G_ema(z, noise_mode="const")}

    def export(self, out_dir: Path) -> None:
        self.export_modules(self.config, {"G_ema": self.G_ema.state_dict()}, out_dir)

    @staticmethod
    def export_modules(config: Any, states: dict[str, Any], out_dir: Path) -> None:
        """Write the EMA generator's synthesis + w_avg (+ mapping, for sampling) as a decoder export."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = states["G_ema"]
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if k.startswith("synthesis.")}
        tensors["w_avg"] = state["mapping.w_avg"].detach().contiguous().cpu()
        for k, v in state.items():
            if k.startswith("mapping.") and k != "mapping.w_avg":
                tensors[k] = v.detach().contiguous().cpu()
        config.model.to_json(out_dir / CONFIG_FILE)
        meta = {"format": "pt", "model": "StyleGAN2Decoder", "mapping_layers": str(config.mapping_layers)}
        save_file(tensors, str(out_dir / DECODER_FILE), metadata=meta)


class _PathLengthState(torch.nn.Module):
    """Running mean of path lengths (a buffer, so it is checkpointed and synchronised)."""

    pl_mean: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pl_mean", torch.zeros([]))


def load_decoder(model: StyleLipSync, directory: str | Path) -> None:
    """Copy a ``train-stylegan`` export (synthesis weights and w_avg) into ``model`` in place."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / DECODER_FILE
    if not weights_path.is_file() or not config_path.is_file():
        raise CheckpointError(
            f"{directory}: not a decoder export (needs {CONFIG_FILE} and {DECODER_FILE}, "
            "as written by `stylelipsync train-stylegan`)"
        )
    saved = json.loads(config_path.read_text())
    wrong = [f for f in SYNTHESIS_FIELDS if saved.get(f) != getattr(model.config, f)]
    if wrong:
        detail = ", ".join(f"{f}: decoder {saved.get(f)} vs model {getattr(model.config, f)}" for f in wrong)
        raise CheckpointError(f"{directory}: the decoder does not fit this model ({detail})")
    state = load_file(str(weights_path), device="cpu")
    synthesis = {k[len("synthesis.") :]: v for k, v in state.items() if k.startswith("synthesis.")}
    model.synthesis.load_state_dict(synthesis, strict=True)
    w_avg = cast(torch.Tensor, model.w_avg)
    w_avg.copy_(state["w_avg"].to(w_avg))
