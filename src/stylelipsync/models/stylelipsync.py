"""StyleLipSync generator: encoders + MaLS + SaMF-fused StyleGAN2 decoder (spec §1.2, §2).

styles_t = MaLS(a_t + w_ref) + w_ref + w_avg, with a = E_aud(mel window), w_ref = E_ref(reference frame);
x̂_t = G(styles_t, E_face(masked frame_t) through the SaMF gates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import torch
from torch import nn

from ..errors import CheckpointError
from .audio_encoder import AudioEncoder
from .config import StyleLipSyncConfig
from .face_encoder import FaceEncoder
from .layers import KernelModule
from .mals import MaLS
from .reference_encoder import ReferenceEncoder
from .synthesis import NoiseMode, SynthesisNetwork

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODULE_NAMES = ("synthesis", "audio_encoder", "face_encoder", "lip_encoder", "mals")


@dataclass(frozen=True)
class InferenceStyles:
    """Intermediate styles of one video: raw encoder outputs and the final decoder input."""

    audio_styles: torch.Tensor
    """E_aud output a, [T, num_ws, style_dim]."""
    reference_styles: torch.Tensor
    """E_ref output w_ref, [num_ws, style_dim]."""
    styles: torch.Tensor
    """MaLS(a + w_ref) + w_ref + w_avg, [T, num_ws, style_dim]."""


@dataclass(frozen=True)
class InferenceOutput:
    """``infer(..., return_styles=True)`` result: decoded frames [T, 3, R, R] and the styles behind them."""

    frames: torch.Tensor
    styles: InferenceStyles


def describe_mismatch(expected: dict[str, torch.Size], found: dict[str, torch.Size], limit: int = 5) -> str:
    """Short human-readable list of missing / unexpected / wrongly shaped keys ('' when they match)."""

    def brief(keys: list[str]) -> str:
        more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {brief(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {brief(unexpected)}")
    if wrong:
        shown = [f"{k} (expected {list(expected[k])}, found {list(found[k])})" for k in wrong]
        parts.append(f"{len(wrong)} shape mismatches: {brief(shown)}")
    return "; ".join(parts)


class StyleLipSync(KernelModule):
    """The full generator. Submodule names match the official checkpoint (``lip_encoder`` is E_ref).

    ``w_avg`` [style_dim] is a buffer (saved by ``save_pretrained``; the official checkpoint keeps it in a
    separate file, see ``load_official_checkpoint``). ``set_kernels("reference" | "fast" | "auto")`` chooses
    the operators of the decoder, the face encoder, its SaMF gates and the encoder stems for the whole model
    (``layers.KernelModule``; default "auto": fast kernels exactly when no autograd graph is built), and
    whoever runs the model sets it. ``fused_modconv`` picks the reference modulated convolution: ``None`` =
    fused grouped convolution in eval mode, per-batch in training mode.
    """

    w_avg: torch.Tensor

    def __init__(self, config: StyleLipSyncConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else StyleLipSyncConfig.paper()
        cfg = self.config
        self.synthesis = SynthesisNetwork(
            cfg.style_dim, cfg.resolution, cfg.channel_table, cfg.image_channels
        )
        self.audio_encoder = AudioEncoder(
            cfg.num_ws, cfg.style_dim, cfg.audio_channels, cfg.se_reduction, (cfg.mel_steps, cfg.mel_bins)
        )
        self.face_encoder = FaceEncoder(cfg)
        self.lip_encoder = ReferenceEncoder(cfg)
        self.mals = nn.ModuleList(MaLS(cfg.style_dim) for _ in range(cfg.num_ws))
        self.register_buffer("w_avg", torch.zeros(cfg.style_dim))
        self.fused_modconv: bool | None = None

    @property
    def reference_encoder(self) -> ReferenceEncoder:
        """E_ref under its paper name (stored as ``lip_encoder`` for checkpoint compatibility)."""
        return self.lip_encoder

    @property
    def num_ws(self) -> int:
        """Number of style vectors (14 at 256²)."""
        return self.config.num_ws

    def parameter_counts(self) -> dict[str, int]:
        """Parameter count per top-level module, plus ``total`` (spec §2.9; buffers excluded)."""
        counts = {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in MODULE_NAMES}
        counts["total"] = sum(counts.values())
        return counts

    # ----------------------------------------------------------------------------------------- stages

    def reference_styles(self, ref: torch.Tensor) -> torch.Tensor:
        """E_ref: reference frames [N, 3, R, R] (or [N, 1, 3, R, R]) → w_ref [N, num_ws, style_dim]."""
        return self.lip_encoder(ref)

    def audio_styles(self, mel: torch.Tensor) -> torch.Tensor:
        """E_aud: mel windows [N, 20, 80] → a [N, num_ws, style_dim]."""
        return self.audio_encoder(mel)

    def face_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """E_face: masked frames [N, 3, R, R] → feature maps for the decoder, coarsest first (4×4 … R/2)."""
        return self.face_encoder(x)

    def mix_styles(self, audio_styles: torch.Tensor, reference_styles: torch.Tensor) -> torch.Tensor:
        """MaLS over time plus identity: MaLS(a + w_ref) + w_ref + w_avg.

        audio_styles [T, n, D] with reference_styles [n, D] → [T, n, D]; or batched clips
        [B, T, n, D] with [B, n, D] → [B, T, n, D]. T ≥ 2 (MaLS uses reflect padding).
        """
        batched = audio_styles.ndim == 4
        if not batched:
            audio_styles = audio_styles.unsqueeze(0)
            reference_styles = reference_styles.unsqueeze(0)
        n, d = self.num_ws, self.config.style_dim
        if audio_styles.ndim != 4 or tuple(audio_styles.shape[2:]) != (n, d):
            raise ValueError(
                f"audio styles must be [T, {n}, {d}] or [B, T, {n}, {d}], got {list(audio_styles.shape)}"
            )
        if tuple(reference_styles.shape) != (audio_styles.shape[0], n, d):
            raise ValueError(
                f"reference styles must be [{n}, {d}] (or [B, {n}, {d}]), got {list(reference_styles.shape)}"
            )
        if audio_styles.shape[1] < 2:
            raise ValueError(
                f"mix_styles needs at least 2 frames: MaLS smooths along time with reflect padding "
                f"(got T={audio_styles.shape[1]}); repeat a single frame to make T=2"
            )
        w_ref = reference_styles.unsqueeze(1)
        u = audio_styles + w_ref
        smoothed = torch.stack([mals(u[:, :, i]) for i, mals in enumerate(self.mals)], dim=2)
        styles = smoothed + w_ref + self.w_avg.to(smoothed.dtype)
        return styles if batched else styles.squeeze(0)

    def decode(
        self, styles: torch.Tensor, face_features: list[torch.Tensor], noise_mode: NoiseMode = "const"
    ) -> torch.Tensor:
        """Decoder G with SaMF fusion: styles [N, n, D] + features of the same N frames → x̂ [N, 3, R, R]."""
        return self.synthesis(
            styles,
            face_features,
            self.face_encoder.gates,
            noise_mode=noise_mode,
            fused_modconv=self.fused_modconv,
        )

    # ----------------------------------------------------------------------------------------- training

    def forward(
        self, x: torch.Tensor, mel: torch.Tensor, ref: torch.Tensor, noise_mode: NoiseMode = "random"
    ) -> torch.Tensor:
        """Training path on clips (random noise by default).

        x [B, T, 3, R, R] masked frames, mel [B, T, 20, 80], ref [B, 1, 3, R, R] → x̂ [B, T, 3, R, R].
        """
        if x.ndim != 5 or mel.ndim != 4 or x.shape[:2] != mel.shape[:2]:
            raise ValueError(
                f"expected x [B, T, 3, R, R] and mel [B, T, 20, 80] with equal B, T; "
                f"got {list(x.shape)} and {list(mel.shape)}"
            )
        batch, frames = x.shape[:2]
        if ref.ndim == 5:
            if ref.shape[1] != 1:
                raise ValueError(f"one reference frame per clip is supported, got ref {list(ref.shape)}")
            ref = ref[:, 0]
        if ref.shape[0] != batch:
            raise ValueError(f"ref batch {ref.shape[0]} does not match x batch {batch}")
        w_ref = self.reference_styles(ref)
        audio = self.audio_styles(mel.flatten(0, 1)).reshape(batch, frames, self.num_ws, -1)
        styles = self.mix_styles(audio, w_ref)
        features = self.face_features(x.flatten(0, 1))
        x_hat = self.decode(styles.flatten(0, 1), features, noise_mode=noise_mode)
        return x_hat.reshape(batch, frames, *x_hat.shape[1:])

    # ----------------------------------------------------------------------------------------- inference

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        weight = next(self.synthesis.parameters())
        return weight.device, weight.dtype

    @torch.no_grad()
    def compute_styles(
        self, mel: torch.Tensor, reference: torch.Tensor, chunk_size: int = 8
    ) -> InferenceStyles:
        """Styles for one video: mel [T, 20, 80], reference [3, R, R] or [1, 3, R, R] → ``InferenceStyles``.

        E_ref runs once; E_aud runs in chunks of ``chunk_size`` frames; MaLS sees the whole sequence.
        Uses the module's current mode (call ``eval()`` first; ``infer`` does this for you).
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        device, dtype = self._device_dtype()
        if reference.ndim == 3:
            reference = reference.unsqueeze(0)
        if reference.ndim != 4 or reference.shape[0] != 1:
            raise ValueError(f"reference must be [3, R, R] or [1, 3, R, R], got {list(reference.shape)}")
        if mel.ndim != 3:
            raise ValueError(f"mel must be [T, 20, 80], got {list(mel.shape)}")
        if mel.shape[0] < 2:
            raise ValueError(f"inference needs at least 2 frames (MaLS), got T={mel.shape[0]}")
        w_ref = self.reference_styles(reference.to(device, dtype))[0]
        audio = torch.cat(
            [self.audio_styles(chunk.to(device, dtype)) for chunk in mel.split(chunk_size)],
            dim=0,
        )
        return InferenceStyles(
            audio_styles=audio, reference_styles=w_ref, styles=self.mix_styles(audio, w_ref)
        )

    @torch.no_grad()
    def render(self, frames: torch.Tensor, styles: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """Decode masked frames [T, 3, R, R] with final styles [T, n, D] in chunks → x̂ [T, 3, R, R] (float32).

        Face features are computed per chunk and dropped after decoding, so memory does not grow with T.
        Constant noise; the output lives on the device of ``frames``.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if frames.ndim != 4 or styles.ndim != 3 or frames.shape[0] != styles.shape[0]:
            raise ValueError(
                f"expected frames [T, 3, R, R] and styles [T, n, D] with equal T, "
                f"got {list(frames.shape)} and {list(styles.shape)}"
            )
        device, dtype = self._device_dtype()
        outputs = []
        for start in range(0, frames.shape[0], chunk_size):
            chunk = frames[start : start + chunk_size].to(device, dtype)
            features = self.face_features(chunk)
            x_hat = self.decode(styles[start : start + chunk_size].to(device), features, noise_mode="const")
            outputs.append(x_hat.to(device=frames.device, dtype=torch.float32))
        return torch.cat(outputs, dim=0)

    @overload
    def infer(
        self,
        frames: torch.Tensor,
        mel: torch.Tensor,
        reference: torch.Tensor,
        chunk_size: int = ...,
        return_styles: Literal[False] = ...,
    ) -> torch.Tensor: ...

    @overload
    def infer(
        self,
        frames: torch.Tensor,
        mel: torch.Tensor,
        reference: torch.Tensor,
        chunk_size: int = ...,
        *,
        return_styles: Literal[True],
    ) -> InferenceOutput: ...

    @torch.no_grad()
    def infer(
        self,
        frames: torch.Tensor,
        mel: torch.Tensor,
        reference: torch.Tensor,
        chunk_size: int = 8,
        return_styles: bool = False,
    ) -> torch.Tensor | InferenceOutput:
        """Official inference path (spec §1.2 steps 7–11) for one video.

        frames [T, 3, R, R] masked, in [−1, 1]; mel [T, 20, 80]; unmasked reference [3, R, R] or [1, 3, R, R].
        Returns x̂ [T, 3, R, R] float32 (not clamped), or ``InferenceOutput`` with ``return_styles=True``.
        Runs in eval mode without gradients, constant noise, encoders and decoder in chunks of ``chunk_size``
        (chunking does not change the result). T ≥ 2.
        """
        if frames.ndim != 4 or mel.ndim != 3 or frames.shape[0] != mel.shape[0]:
            raise ValueError(
                f"expected frames [T, 3, R, R] and mel [T, 20, 80] with equal T, "
                f"got {list(frames.shape)} and {list(mel.shape)}"
            )
        was_training = self.training
        self.eval()
        try:
            styles = self.compute_styles(mel, reference, chunk_size)
            x_hat = self.render(frames, styles.styles, chunk_size)
        finally:
            self.train(was_training)
        return InferenceOutput(x_hat, styles) if return_styles else x_hat

    # ----------------------------------------------------------------------------------------- persistence

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (all parameters and buffers, w_avg included)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_json(directory / CONFIG_FILE)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "model": "StyleLipSync"})

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> StyleLipSync:
        """Load a model written by ``save_pretrained``; returned in eval mode on ``device`` (default CPU)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise CheckpointError(
                    f"{path}: file not found; point to a directory written by StyleLipSync.save_pretrained "
                    f"(it holds {CONFIG_FILE} and {WEIGHTS_FILE})"
                )
        try:
            config = StyleLipSyncConfig.from_json(config_path)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"{config_path}: invalid model config ({exc}); re-export the model"
            ) from exc
        try:
            state = load_file(str(weights_path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(
                f"{weights_path}: cannot read safetensors weights ({exc}); re-export the model"
            ) from exc
        with torch.device("meta"):
            model = cls(config)
        model_state = model.state_dict()
        expected = {k: v.shape for k, v in model_state.items()}
        mismatch = describe_mismatch(expected, {k: v.shape for k, v in state.items()})
        if mismatch:
            raise CheckpointError(
                f"{weights_path}: the config in {config_path.name} and the weights don't match ({mismatch}); "
                f"save config and weights together with save_pretrained"
            )
        # weights may be stored in fp16 (shipped model): cast each tensor to the module's own dtype
        state = {k: v.to(model_state[k].dtype) for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        model.to(device=device if device is not None else "cpu")
        if dtype is not None:
            model.to(dtype=dtype)
        return model.eval()
