"""SyncNet expert: does a 0.2 s mel window match the lower half of 5 consecutive frames? (spec §4.6, §8 #2)

A Wav2Lip-style expert trained on the project's own crops and the spec's 20×80 mel windows (not Wav2Lip's
16×80 at hop 200), used frozen as the lip-sync loss of StyleLipSync and of adaptation.

Two towers map their inputs to L2-normalised embeddings:

* face: the lower halves of 5 RGB frames in [−1, 1], stacked on channels → [B, 15, S/2, S];
* audio: one mel window [B, 1, 20, 80] (the window of the centre frame covers the 5 frames).

**Sync probability** p = (cos + 1) / 2 ∈ [0, 1], trained with binary cross-entropy (label 1 = in sync).
(cos + 1)/2 is chosen over Wav2Lip's relu(cos) because it keeps a gradient for every pair: with relu an
in-sync pair whose cosine starts negative never receives one.

Optional auxiliary heads regress the 5 frames' mouth opening (from the crop landmarks) from each
embedding during training. On a few minutes of data this makes both towers find the mouth long before the
contrastive signal alone does; the sync probability itself does not use them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylelipsync.errors import CheckpointError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EPS = 1e-6


@dataclass(frozen=True)
class SyncNetConfig:
    """Expert size. ``face_size`` is the side of the square face crop; the tower sees its lower half.

    ``mel_norm``: ``clip`` = the mel windows are normalised per clip and band (mean/std over the whole clip's
    log-mel) before the audio tower, as the small-data findings recommend; ``none`` = raw log-mel.
    ``aux_heads``: linear heads that predict the 5 frames' mouth opening from each embedding, for the
    auxiliary training loss (they are not used by ``sync_probability``).
    """

    face_size: int = 64
    num_frames: int = 5
    mel_steps: int = 20
    mel_bins: int = 80
    face_channels: tuple[int, ...] = (16, 32, 64, 128, 128)
    audio_channels: tuple[int, ...] = (16, 32, 64, 128)
    embed_dim: int = 128
    dropout: float = 0.3
    mel_norm: str = "clip"
    aux_heads: bool = True

    def __post_init__(self) -> None:
        if self.mel_norm not in ("none", "clip"):
            raise ValueError(f"mel_norm must be 'none' or 'clip', got {self.mel_norm!r}")
        if self.face_size < 8 or self.face_size % 2:
            raise ValueError(f"face_size must be an even number >= 8, got {self.face_size}")
        if not self.face_channels or not self.audio_channels:
            raise ValueError("face_channels and audio_channels must not be empty")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def tiny(cls) -> SyncNetConfig:
        """A few thousand parameters, 32² faces (16×32 lower halves): for tests."""
        return cls(face_size=32, face_channels=(8, 16, 16, 32), audio_channels=(8, 16, 32), embed_dim=32)

    @classmethod
    def small(cls) -> SyncNetConfig:
        """≈1.5 M parameters, 64² faces (32×64 lower halves): trains on 2 CPU cores (shipped model)."""
        return cls()

    @classmethod
    def paper(cls) -> SyncNetConfig:
        """128² faces (64×128 lower halves), 512-d embeddings: for GPU training on VoxCeleb2-scale data."""
        return cls(
            face_size=128,
            face_channels=(64, 128, 256, 512, 512, 512),
            audio_channels=(64, 128, 256, 512),
            embed_dim=512,
            dropout=0.1,
        )

    @classmethod
    def preset(cls, name: str) -> SyncNetConfig:
        """``tiny`` / ``small`` / ``paper``."""
        presets = {"tiny": cls.tiny, "small": cls.small, "paper": cls.paper}
        if name not in presets:
            raise ValueError(f"unknown SyncNet preset {name!r}; choose one of {', '.join(presets)}")
        return presets[name]()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncNetConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SyncNetConfig fields: {', '.join(unknown)}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


class ConvBlock(nn.Module):
    """Conv → BatchNorm → ReLU, optionally strided."""

    def __init__(self, in_ch: int, out_ch: int, stride: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class ResBlock(nn.Module):
    """Two 3×3 convolutions with an identity skip (channels and size unchanged)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(x + self.norm2(self.conv2(y)))


class Tower(nn.Module):
    """Stem, then per stage a strided ConvBlock and a ResBlock; global average pool → dropout → linear."""

    def __init__(
        self,
        in_ch: int,
        channels: tuple[int, ...],
        strides: list[tuple[int, int]],
        embed_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.stem = ConvBlock(in_ch, channels[0])
        stages: list[nn.Module] = []
        prev = channels[0]
        for ch, stride in zip(channels, strides, strict=True):
            stages.append(nn.Sequential(ConvBlock(prev, ch, stride), ResBlock(ch)))
            prev = ch
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(prev, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised embedding [B, embed_dim]."""
        x = self.stages(self.stem(x))
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


class SyncNetExpert(nn.Module):
    """Face and audio towers → unit embeddings; ``sync_probability`` = (cos + 1) / 2."""

    def __init__(self, config: SyncNetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else SyncNetConfig.small()
        cfg = self.config
        face_strides = [(2, 2)] * len(cfg.face_channels)
        audio_strides = [
            (2, 2) if i % 2 == 0 or i == len(cfg.audio_channels) - 1 else (1, 2)
            for i in range(len(cfg.audio_channels))
        ]
        if cfg.aux_heads:
            self.face_aux = nn.Linear(cfg.embed_dim, cfg.num_frames)
            self.audio_aux = nn.Linear(cfg.embed_dim, cfg.num_frames)
        self.face_encoder = Tower(
            3 * cfg.num_frames, cfg.face_channels, face_strides, cfg.embed_dim, cfg.dropout
        )
        self.audio_encoder = Tower(1, cfg.audio_channels, audio_strides, cfg.embed_dim, cfg.dropout)

    def lower_half(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] frames in [−1, 1] (any size) → tower input [B, 3T, S/2, S] at the config's size."""
        b, t, c, h, w = frames.shape
        if t != self.config.num_frames:
            raise ValueError(f"SyncNet expects {self.config.num_frames} frames, got {t}")
        x = frames.reshape(b * t, c, h, w)
        size = self.config.face_size
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = x[:, :, size // 2 :, :]
        return x.reshape(b, t * c, size // 2, size)

    def face_features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, 5, 3, H, W] in [−1, 1] → un-normalised face embedding [B, embed_dim]."""
        return self.face_encoder(self.lower_half(frames))

    def audio_features(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 20, 80] (or [B, 1, 20, 80]) mel window → un-normalised audio embedding [B, embed_dim]."""
        return self.audio_encoder(mel.unsqueeze(1) if mel.ndim == 3 else mel)

    def embed_face(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, 5, 3, H, W] in [−1, 1] → [B, embed_dim] unit vectors."""
        return F.normalize(self.face_features(frames), dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 20, 80] (or [B, 1, 20, 80]) mel window → [B, embed_dim] unit vectors."""
        return F.normalize(self.audio_features(mel), dim=1)

    @staticmethod
    def probability(face_emb: torch.Tensor, audio_emb: torch.Tensor) -> torch.Tensor:
        """(cos + 1) / 2 of unit embeddings, clamped away from 0 and 1 for the log."""
        cos = (face_emb * audio_emb).sum(dim=1)
        return ((cos + 1.0) * 0.5).clamp(EPS, 1.0 - EPS)

    def forward(self, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Sync probability [B] of 5 frames [B, 5, 3, H, W] with a mel window [B, 20, 80]."""
        return self.probability(self.embed_face(frames), self.embed_audio(mel))

    def sync_loss(self, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """−log p(in sync): the generator's lip-sync loss (BCE with label 1), averaged over the batch."""
        return -torch.log(self(frames, mel)).mean()

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(
            json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n"
        )
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "model": "SyncNetExpert"})

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device | None = None
    ) -> SyncNetExpert:
        """Load a model written by ``save_pretrained``; returned in eval mode."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise CheckpointError(
                    f"{path}: file not found; point to a SyncNet directory written by save_pretrained "
                    f"(`stylelipsync train-syncnet` writes one to RUN_DIR/export)"
                )
        try:
            config = SyncNetConfig.from_dict(json.loads(config_path.read_text()))
            model = cls(config)
            model.load_state_dict(load_file(str(weights_path), device="cpu"), strict=True)
        except (ValueError, RuntimeError, OSError) as exc:
            raise CheckpointError(f"{directory}: not a valid SyncNet expert ({exc})") from exc
        return model.to(device if device is not None else "cpu").eval()
