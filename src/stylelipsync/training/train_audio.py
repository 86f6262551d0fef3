"""Audio-encoder pre-training on mouth opening (``stylelipsync train-audio``): the small-data lip-sync fix.

On a few minutes of speech, an audio encoder trained only through image reconstruction memorises the training
speakers and carries no mouth information for new voices (docs/small_data_findings.md). Here E_aud is trained
first, alone, to predict the mouth opening measured by the face landmarks (z-scored per clip) from the
per-clip-normalised mel window of each frame, through a linear head on its styles, with weight decay, dropout
and mel augmentation, and validated on held-out **persons** (correlation per clip). The generator is then
trained with this encoder frozen (``audio_init`` + ``freeze_audio`` in ``train``), so the only audio features
it can use are ones that are known to carry over to unheard speakers.

The export is ``audio_encoder.safetensors`` with StyleLipSync's own key names (``audio_encoder.…``) plus the
head and ``audio_encoder.json`` (shapes, mel normalisation, held-out correlation).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from stylelipsync.models.audio_encoder import AudioEncoder
from stylelipsync.models.config import StyleLipSyncConfig
from stylelipsync.training.config import TrainerConfig
from stylelipsync.training.dataset import (
    ClipArrays,
    ClipInfo,
    DataConfig,
    LipSyncWindowDataset,
    split_dataset,
)
from stylelipsync.training.train_syncnet import prepare_mel
from stylelipsync.training.trainer import Batch, Trainer, TrainingTask

WEIGHTS_FILE = "audio_encoder.safetensors"
INFO_FILE = "audio_encoder.json"
PREFIX = "audio_encoder."


class MouthOpeningHead(nn.Module):
    """Training-only head: audio styles [N, n, D] → mouth opening [N] (dropout + one linear layer).

    Linear on purpose: whatever the encoder learns must be linearly readable as mouth opening from the styles
    the decoder receives.
    """

    def __init__(self, num_ws: int, style_dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(num_ws * style_dim, 1)

    def forward(self, styles: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(styles.flatten(1))).squeeze(1)


@dataclass
class AudioTrainConfig:
    """Everything ``train-audio`` needs (YAML-loadable). ``model`` must match the StyleLipSync model's."""

    model: StyleLipSyncConfig = field(
        default_factory=lambda: StyleLipSyncConfig(
            resolution=128,
            style_dim=96,
            channel_base=2048,
            channel_max=64,
            audio_channels=32,
            se_reduction=8,
            mel_normalization="per_clip",
        )
    )
    data: DataConfig = field(
        default_factory=lambda: DataConfig(num_frames=1, mel_norm="clip", mel_noise=0.1, mel_band_mask=8)
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            steps=2_000, batch_size=64, image_every=0, val_every=250, checkpoint_every=250
        )
    )
    lr: float = 1e-3
    weight_decay: float = 1e-3
    dropout: float = 0.3

    @classmethod
    def preset(cls, name: str) -> AudioTrainConfig:
        """``small`` (the shipped demo model's audio encoder) or ``tiny`` (tests)."""
        if name == "small":
            return cls()
        if name == "tiny":
            return cls(
                model=StyleLipSyncConfig.tiny(resolution=32),
                trainer=TrainerConfig(
                    steps=20,
                    batch_size=8,
                    num_workers=0,
                    torch_threads=1,
                    log_every=5,
                    image_every=0,
                    val_every=10,
                    checkpoint_every=10,
                ),
            )
        raise ValueError(f"unknown train-audio preset {name!r}; choose small or tiny")


def build_audio_encoder(config: StyleLipSyncConfig) -> AudioEncoder:
    """E_aud exactly as ``StyleLipSync`` builds it for ``config``."""
    return AudioEncoder(
        config.num_ws,
        config.style_dim,
        config.audio_channels,
        config.se_reduction,
        (config.mel_steps, config.mel_bins),
    )


class AudioMouthTask(TrainingTask):
    """Trains E_aud + a linear mouth-opening head; validates on held-out persons."""

    name = "audio"

    def __init__(self, config: AudioTrainConfig) -> None:
        self.config = config
        self._split: tuple[list[ClipInfo], list[ClipInfo]] | None = None
        self._val: list[tuple[str, torch.Tensor, torch.Tensor]] | None = None

    def build(self, trainer: Trainer) -> None:
        self.trainer = trainer
        cfg = self.config
        self.encoder = build_audio_encoder(cfg.model).to(trainer.device)
        self.head = MouthOpeningHead(cfg.model.num_ws, cfg.model.style_dim, cfg.dropout).to(trainer.device)
        self.net = nn.ModuleDict({"encoder": self.encoder, "head": self.head})
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def modules(self) -> dict[str, nn.Module]:
        return {"audio": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"audio": self.opt}

    def split(self) -> tuple[list[ClipInfo], list[ClipInfo]]:
        """(train, val) clips, split by person."""
        if self._split is None:
            self._split = split_dataset(self.config.data)
        return self._split

    def train_dataset(self) -> LipSyncWindowDataset:
        return LipSyncWindowDataset(self.split()[0], self.config.data, augment=True, outputs={"opening"})

    def _mel(self, mel: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return prepare_mel(mel, mean, std, self.config.data.mel_norm)

    def train_step(self, batches: list[Batch], step: int) -> dict[str, float]:
        self.net.train()

        def loss_fn(b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            mel = self._mel(b["mel"], b["mel_mean"], b["mel_std"]).flatten(0, 1)
            target = b["opening"].flatten().float()
            pred = self.head(self.encoder(mel)).float()
            loss = F.mse_loss(pred, target)
            return loss, {"mse": loss.detach(), "loss": loss.detach()}

        return self.trainer.optimize("audio", loss_fn, batches)

    def _val_clips(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """Every frame of every held-out clip with a known mouth opening: (clip id, mel, opening)."""
        if self._val is None:
            self._val = []
            for clip in self.split()[1]:
                arrays = ClipArrays(clip)
                lo, hi = arrays.centre_range()
                opening = arrays.mouth_opening()
                idx = np.arange(lo, hi + 1)
                idx = idx[np.isfinite(opening[idx])]
                if len(idx) < 10:
                    continue
                mean, std = arrays.stats()
                mel = torch.from_numpy(np.stack([arrays.mel_window(int(t)) for t in idx]))
                mel = self._mel(mel, torch.from_numpy(mean), torch.from_numpy(std))
                self._val.append((clip.id, mel, torch.from_numpy(opening[idx].astype(np.float32))))
        return self._val

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Pearson correlation of predicted vs landmark mouth opening per held-out clip, and their mean."""
        was = self.net.training
        self.net.eval()
        out: dict[str, float] = {}
        device = self.trainer.device if hasattr(self, "trainer") else torch.device("cpu")
        for clip_id, mel, opening in self._val_clips():
            pred = torch.cat([self.head(self.encoder(m.to(device))).cpu() for m in mel.split(256)])
            p, y = pred.double() - pred.double().mean(), opening.double() - opening.double().mean()
            out[f"corr/{clip_id}"] = float((p * y).sum() / (p.norm() * y.norm()).clamp(min=1e-12))
        self.net.train(was)
        if out:
            out["corr_mean"] = float(np.mean(list(out.values())))
        return out

    def validate(self, step: int) -> dict[str, float]:
        return self.evaluate()

    def export(self, out_dir: Path) -> None:
        metrics = self.evaluate() if self.split()[1] else {}
        self.export_modules(self.config, {"audio": self.net.state_dict()}, out_dir, metrics)

    @staticmethod
    def export_modules(
        config: Any, states: dict[str, Any], out_dir: Path, metrics: dict[str, float] | None = None
    ) -> None:
        """Write E_aud with StyleLipSync key names (+ the head under ``head.``) and a JSON description."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for key, value in states["audio"].items():
            if key.startswith("encoder."):
                tensors[PREFIX + key[len("encoder.") :]] = value.detach().cpu().contiguous()
            else:
                tensors[key] = value.detach().cpu().contiguous()
        tmp = out_dir / (WEIGHTS_FILE + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, out_dir / WEIGHTS_FILE)
        info = {
            "model": dataclasses.asdict(config.model),
            "mel_norm": config.data.mel_norm,
            "held_out_persons": list(config.data.val_persons),
            "metrics": metrics or {},
        }
        (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def load_audio_encoder_weights(model: nn.Module, path: str | Path) -> None:
    """Copy a ``train-audio`` export (directory or .safetensors) into ``model.audio_encoder`` (strict)."""
    path = Path(path)
    file = path / WEIGHTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no audio encoder weights; run `stylelipsync train-audio` first")
    tensors = load_file(str(file))
    state = {k[len(PREFIX) :]: v for k, v in tensors.items() if k.startswith(PREFIX)}
    target = model.get_submodule("audio_encoder")
    expected = target.state_dict()
    mismatched = [k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k].shape)]
    if mismatched or set(state) - set(expected):
        raise ValueError(
            f"{file}: audio encoder weights do not fit this model (first mismatches: {mismatched[:3]}); "
            "train-audio must use the same model config (style_dim, audio_channels, se_reduction, resolution)"
        )
    target.load_state_dict(state)
