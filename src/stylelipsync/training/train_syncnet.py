"""SyncNet expert training (``stylelipsync train-syncnet``), spec §4.6 option (a).

Positives: the lower halves of 5 consecutive frames with the mel window of their centre frame. Negatives:
the same clip's audio shifted by ``min_shift``…``max_shift`` frames (teaches timing), or another person's
audio (``other_clip_prob``). Validation runs on held-out **persons** and reports, for each held-out window,
whether the expert accepts the true audio and rejects a ≥5-frame shift and another clip's audio, plus
offset detection (is the best of ±15 frame offsets within ±1 frame of the truth).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from stylelipsync.audio.normalization import normalize_mel
from stylelipsync.models.syncnet import SyncNetConfig, SyncNetExpert
from stylelipsync.training.config import TrainerConfig
from stylelipsync.training.dataset import (
    ClipInfo,
    DataConfig,
    LipSyncWindowDataset,
    split_dataset,
)
from stylelipsync.training.trainer import Batch, Trainer, TrainingTask


@dataclass
class SyncNetTrainConfig:
    """Everything ``train-syncnet`` needs (YAML-loadable).

    The defaults (``small``) are the settings of the best CPU probe on the shared clips: few other-clip
    negatives (``other_clip_prob`` 0.1; they can be solved by matching voice to face, which does not carry
    over to new people), audio and image augmentation, dropout 0.3, AdamW 1e-3.
    """

    model: SyncNetConfig = field(default_factory=SyncNetConfig.small)
    data: DataConfig = field(
        default_factory=lambda: DataConfig(
            mel_norm="clip", color_jitter=0.1, mel_noise=0.05, mel_band_mask=8, other_clip_prob=0.1
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(steps=3_000, batch_size=32, val_every=250, checkpoint_every=250)
    )
    lr: float = 1e-3
    weight_decay: float = 1e-3
    aux_weight: float = 0.5
    val_stride: int = 3
    val_max_windows: int = 1_500
    val_offset_windows: int = 300
    val_max_offset: int = 15

    @classmethod
    def preset(cls, name: str) -> SyncNetTrainConfig:
        """``tiny`` (tests), ``small`` (CPU, the shipped model) or ``paper`` (GPU cluster)."""
        cfg = cls(model=SyncNetConfig.preset(name))
        if name == "tiny":
            cfg.trainer = TrainerConfig(
                steps=20,
                batch_size=8,
                num_workers=0,
                torch_threads=1,
                log_every=5,
                val_every=0,
                image_every=0,
                checkpoint_every=10,
            )
            cfg.val_max_windows, cfg.val_offset_windows = 64, 16
        elif name == "paper":
            cfg.trainer = TrainerConfig(
                steps=100_000,
                batch_size=64,
                num_workers=8,
                val_every=2_000,
                checkpoint_every=2_000,
                image_every=0,
            )
            cfg.lr = 1e-4
        return cfg


def prepare_mel(mel: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, mode: str) -> torch.Tensor:
    """Apply the model's mel normalisation (``clip`` or ``none``) to windows [B, ..., 20, 80]."""
    return normalize_mel(mel, mean, std) if mode == "clip" else mel


def bce(p: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on probabilities, in float32 (safe under autocast)."""
    p, label = p.float(), label.float()
    return -(label * p.log() + (1.0 - label) * (1.0 - p).log()).mean()


class SyncNetTask(TrainingTask):
    """Trains ``SyncNetExpert`` with BCE on (cos + 1)/2."""

    name = "syncnet"

    def __init__(self, config: SyncNetTrainConfig) -> None:
        self.config = config
        self._split: tuple[list[ClipInfo], list[ClipInfo]] | None = None
        self._val_batches: list[Batch] | None = None

    def build(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.net = SyncNetExpert(self.config.model).to(trainer.device)
        self.opt = torch.optim.AdamW(
            self.net.parameters(),
            lr=self.config.lr,
            betas=(0.9, 0.999),
            weight_decay=self.config.weight_decay,
        )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"syncnet": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"syncnet": self.opt}

    def _data_config(self) -> DataConfig:
        return dataclasses.replace(
            self.config.data, resolution=self.config.model.face_size, num_frames=self.config.model.num_frames
        )

    def split(self) -> tuple[list[ClipInfo], list[ClipInfo]]:
        """(train, val) clips, split by person."""
        if self._split is None:
            self._split = split_dataset(self.config.data)
        return self._split

    def train_dataset(self) -> LipSyncWindowDataset:
        outputs = {"frames", "sync", "opening"} if self._aux else {"frames", "sync"}
        return LipSyncWindowDataset(self.split()[0], self._data_config(), augment=True, outputs=outputs)

    @property
    def _aux(self) -> bool:
        return self.config.model.aux_heads and self.config.aux_weight > 0

    def _mel(self, mel: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return prepare_mel(mel, mean, std, self.config.model.mel_norm)

    def train_step(self, batches: list[Batch], step: int) -> dict[str, float]:
        self.net.train()

        def loss_fn(b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            face = self.net.face_features(b["frames"])
            audio = self.net.audio_features(self._mel(b["sync_mel"], b["sync_mel_mean"], b["sync_mel_std"]))
            p = self.net.probability(F.normalize(face, dim=1), F.normalize(audio, dim=1))
            label = b["sync_label"]
            loss = bce(p, label)
            parts = {"bce": loss.detach(), "acc": ((p.detach() > 0.5).float() == label).float().mean()}
            if self._aux:
                target = b["opening"].float()
                aux_face = F.mse_loss(self.net.face_aux(face).float(), target)
                pos = label > 0.5
                err = (self.net.audio_aux(audio).float() - target).square().mean(dim=1)
                aux_audio = (err * pos).sum() / pos.sum().clamp(min=1)
                loss = loss + self.config.aux_weight * (aux_face + aux_audio)
                parts.update({"aux_face": aux_face.detach(), "aux_audio": aux_audio.detach()})
            parts["loss"] = loss.detach()
            return loss, parts

        return self.trainer.optimize("syncnet", loss_fn, batches)

    # ------------------------------------------------------------------ validation
    def _validation_set(self) -> tuple[LipSyncWindowDataset, np.ndarray]:
        val = self.split()[1]
        if not val:
            raise ValueError("no validation persons: set data.val_persons or data.n_val_persons")
        cfg = dataclasses.replace(self._data_config(), window_stride=self.config.val_stride)
        ds = LipSyncWindowDataset(val, cfg, augment=False, outputs={"frames", "opening"})
        rng = np.random.default_rng(1234)
        n = min(len(ds), self.config.val_max_windows)
        idx = np.sort(rng.choice(len(ds), size=n, replace=False))
        return ds, idx

    @torch.no_grad()
    def evaluate(self, batch_size: int = 64) -> dict[str, float]:
        """Held-out metrics: accuracies on true / shifted / other-clip audio, ranking and offset detection."""
        ds, idx = self._validation_set()
        rng = np.random.default_rng(4321)
        cfg = self.config
        self.net.eval()
        device = self.trainer.device if hasattr(self, "trainer") else torch.device("cpu")
        p_true: list[torch.Tensor] = []
        p_shift: list[torch.Tensor] = []
        p_other: list[torch.Tensor] = []
        offset_hits: list[bool] = []
        openings: list[torch.Tensor] = []
        face_open: list[torch.Tensor] = []
        audio_open: list[torch.Tensor] = []
        d = cfg.data
        for lo in range(0, len(idx), batch_size):
            items = [ds[int(i)] for i in idx[lo : lo + batch_size]]
            batch = default_collate(items)
            face_raw = self.net.face_features(batch["frames"].to(device))
            faces = F.normalize(face_raw, dim=1)
            if self.config.model.aux_heads:
                openings.append(batch["opening"][:, ds.config.num_frames // 2])
                face_open.append(self.net.face_aux(face_raw)[:, ds.config.num_frames // 2].cpu())
            true_w, shift_w, other_w, stats = [], [], [], []
            for it in items:
                ci, centre = int(it["clip"]), int(it["start"]) + ds.config.num_frames // 2
                arrays = ds.arrays[ci]
                lo_c, hi_c = arrays.centre_range()
                cand = np.arange(lo_c, hi_c + 1)
                shift = np.abs(cand - centre)
                cand = cand[(shift >= d.min_shift) & (shift <= max(d.max_shift, d.min_shift))]
                shifted = int(cand[rng.integers(len(cand))]) if len(cand) else centre + d.min_shift
                others = (
                    [k for k, c in enumerate(ds.clips) if c.person != ds.clips[ci].person]
                    or [k for k in range(len(ds.clips)) if k != ci]
                    or [ci]
                )
                oi = others[int(rng.integers(len(others)))]
                o_lo, o_hi = ds.arrays[oi].centre_range()
                true_w.append(arrays.mel_window(centre))
                shift_w.append(arrays.mel_window(shifted))
                other_w.append(ds.arrays[oi].mel_window(int(rng.integers(o_lo, max(o_lo, o_hi) + 1))))
                stats.append((arrays.stats(), ds.arrays[oi].stats()))
            own_m = torch.from_numpy(np.stack([s[0][0] for s in stats])).to(device)
            own_s = torch.from_numpy(np.stack([s[0][1] for s in stats])).to(device)
            oth_m = torch.from_numpy(np.stack([s[1][0] for s in stats])).to(device)
            oth_s = torch.from_numpy(np.stack([s[1][1] for s in stats])).to(device)

            p_true.append(self._prob(faces, true_w, own_m, own_s))
            if self.config.model.aux_heads:
                mel = self._mel(torch.from_numpy(np.stack(true_w)).to(device), own_m, own_s)
                audio_open.append(
                    self.net.audio_aux(self.net.audio_features(mel))[:, ds.config.num_frames // 2].cpu()
                )
            p_shift.append(self._prob(faces, shift_w, own_m, own_s))
            p_other.append(self._prob(faces, other_w, oth_m, oth_s))
            for j, it in enumerate(items):
                if len(offset_hits) >= cfg.val_offset_windows:
                    break
                offset_hits.append(self._offset_hit(ds, it, faces[j], own_m[j], own_s[j]))
        pt, ps, po = torch.cat(p_true), torch.cat(p_shift), torch.cat(p_other)
        acc_true = float((pt > 0.5).float().mean())
        acc_shift = float((ps < 0.5).float().mean())
        acc_other = float((po < 0.5).float().mean())
        ones, zeros = torch.ones_like(pt), torch.zeros_like(pt)
        return {
            "loss": float(0.5 * bce(pt, ones) + 0.25 * bce(ps, zeros) + 0.25 * bce(po, zeros)),
            "acc_true": acc_true,
            "acc_shifted": acc_shift,
            "acc_other": acc_other,
            "acc_balanced": 0.5 * acc_true + 0.25 * (acc_shift + acc_other),
            "rank_vs_shifted": float((pt > ps).float().mean()),
            "rank_vs_other": float((pt > po).float().mean()),
            "offset_acc": float(np.mean(offset_hits)) if offset_hits else float("nan"),
            "offset_chance": 3.0 / (2 * cfg.val_max_offset + 1),
            "windows": float(len(pt)),
            **self._opening_correlations(openings, face_open, audio_open),
        }

    @staticmethod
    def _opening_correlations(
        truth: list[torch.Tensor], face: list[torch.Tensor], audio: list[torch.Tensor]
    ) -> dict[str, float]:
        """Pearson correlation of the aux heads' mouth opening with the landmarks' (centre frame)."""
        if not truth:
            return {}
        y = torch.cat(truth).double()

        def corr(x: torch.Tensor) -> float:
            x = x.double() - x.double().mean()
            yc = y - y.mean()
            return float((x * yc).sum() / (x.norm() * yc.norm()).clamp(min=1e-12))

        return {"face_opening_corr": corr(torch.cat(face)), "audio_opening_corr": corr(torch.cat(audio))}

    def _prob(
        self, faces: torch.Tensor, windows: list[np.ndarray], mean: torch.Tensor, std: torch.Tensor
    ) -> torch.Tensor:
        mel = torch.from_numpy(np.stack(windows)).to(faces.device)
        return self.net.probability(faces, self.net.embed_audio(self._mel(mel, mean, std))).cpu()

    def _offset_hit(
        self,
        ds: LipSyncWindowDataset,
        item: dict[str, Any],
        face: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
    ) -> bool:
        """Is the most probable of ±max_offset audio offsets within ±1 frame of the true one?"""
        arrays = ds.arrays[int(item["clip"])]
        centre = int(item["start"]) + ds.config.num_frames // 2
        k = self.config.val_max_offset
        offsets = list(range(-k, k + 1))
        mel = torch.from_numpy(np.stack([arrays.mel_window(centre + o) for o in offsets])).to(face.device)
        audio = self.net.embed_audio(self._mel(mel, mean, std))
        best = offsets[int((audio @ face).argmax())]
        return abs(best) <= 1

    def validate(self, step: int) -> dict[str, float]:
        was = self.net.training
        metrics = self.evaluate()
        self.net.train(was)
        return metrics

    def export(self, out_dir: Path) -> None:
        self.export_modules(self.config, {"syncnet": self.net.state_dict()}, out_dir)

    @staticmethod
    def export_modules(config: Any, states: dict[str, Any], out_dir: Path) -> None:
        """Write the expert (``save_pretrained``) from checkpoint state dicts."""
        net = SyncNetExpert(config.model)
        net.load_state_dict(states["syncnet"])
        net.save_pretrained(out_dir)
