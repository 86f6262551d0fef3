"""Hyper-parameters of the StyleLipSync networks (spec §2) as one JSON-serialisable dataclass."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StyleLipSyncConfig:
    """Architecture of the generator: decoder resolution, channel table, style width, encoder widths.

    The decoder channel table follows StyleGAN2-ADA: ``C_R = min(channel_base // R, channel_max)``, then
    scaled by ``channel_multiplier`` (for small test models). The face and reference encoders reuse the
    same table so that their features line up with the decoder activations (spec §2.4). The paper
    configuration (``paper()``) is the official 256² model with 137,876,584 parameters.
    """

    resolution: int = 256
    style_dim: int = 512
    channel_base: int = 16384
    channel_max: int = 512
    channel_multiplier: float = 1.0
    audio_channels: int = 64
    se_reduction: int = 16
    mel_steps: int = 20
    mel_bins: int = 80
    image_channels: int = 3
    mel_normalization: str = "none"
    """Audio front-end contract of the weights: "none" (official, raw log10 mel) or "per_clip" (each band
    standardised over the whole driving audio; helps small models generalise across speakers)."""

    def __post_init__(self) -> None:
        log2 = math.log2(self.resolution) if self.resolution > 0 else 0.0
        if self.resolution < 8 or log2 != int(log2):
            raise ValueError(f"resolution must be a power of two >= 8, got {self.resolution}")
        for name in ("style_dim", "channel_base", "channel_max", "audio_channels", "se_reduction"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.channel_multiplier <= 0:
            raise ValueError(f"channel_multiplier must be positive, got {self.channel_multiplier}")
        if self.mel_normalization not in ("none", "per_clip"):
            raise ValueError(
                f"mel_normalization must be 'none' or 'per_clip', got {self.mel_normalization!r}"
            )
        if self.mel_steps < 1 or self.mel_bins < 1:
            raise ValueError(f"mel window must be non-empty, got {self.mel_steps}x{self.mel_bins}")

    @classmethod
    def paper(cls) -> StyleLipSyncConfig:
        """The official 256² model (spec §2), 137,876,584 parameters.

        14 styles of 512; channels {4…32: 512, 64: 256, 128: 128, 256: 64}.
        """
        return cls()

    @classmethod
    def tiny(cls, resolution: int = 64) -> StyleLipSyncConfig:
        """A few-hundred-thousand-parameter model for fast tests (64² by default; any power of two works)."""
        return cls(
            resolution=resolution,
            style_dim=64,
            channel_base=2048,
            channel_max=64,
            audio_channels=16,
            se_reduction=4,
        )

    @property
    def log2_resolution(self) -> int:
        """log2 of the output size (8 at 256²)."""
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:
        """Number of style vectors: two per block except one for b4, plus the last toRGB (14 at 256²)."""
        return 2 * self.log2_resolution - 2

    @property
    def block_resolutions(self) -> list[int]:
        """Decoder block resolutions, 4 up to ``resolution`` (b4 … b256)."""
        return [2**i for i in range(2, self.log2_resolution + 1)]

    @property
    def num_feature_levels(self) -> int:
        """Number of face-encoder feature maps, one per decoder block above b4 (6 at 256²)."""
        return self.log2_resolution - 2

    def channels(self, res: int) -> int:
        """Channels of decoder activations and encoder features at resolution ``res``."""
        base = min(self.channel_base // res, self.channel_max)
        return max(1, round(base * self.channel_multiplier))

    @property
    def channel_table(self) -> dict[int, int]:
        """``{resolution: channels}`` for every decoder block."""
        return {res: self.channels(res) for res in self.block_resolutions}

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (field name → value)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StyleLipSyncConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError`` so typos do not pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown StyleLipSyncConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self, path: str | Path) -> None:
        """Write the config as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> StyleLipSyncConfig:
        """Read a config written by ``to_json``."""
        return cls.from_dict(json.loads(Path(path).read_text()))
