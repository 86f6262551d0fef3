"""The fine-tuning task of adaptation (spec §5): what is trained, on which losses, and its preview grids.

``AdaptationTask`` is ``StyleLipSyncTask`` with ``adapt: true``: only the decoder (synthesis) is tuned;
encoders, SaMF gates and MaLS are frozen and the model stays in eval mode so BatchNorm statistics cannot
drift. The objective is LPIPS(x̂, y) + λ_sync·L_sync(x̂, a) + λ_reg·R_sync, R_sync being the SyncNet loss of
the target's masked frames driven by the audio pool (other speakers); no ℓ2 and no identity loss (they cause
flicker). The losses themselves live in ``training.train_stylelipsync``, shared with training; this module
adds the explicit audio pool and the preview grids.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

from stylelipsync.training.dataset import ClipInfo, LipSyncWindowDataset
from stylelipsync.training.train_stylelipsync import StyleLipSyncTask, StyleLipSyncTrainConfig
from stylelipsync.training.trainer import Batch, image_grid


class AdaptationTask(StyleLipSyncTask):
    """``StyleLipSyncTask`` in adaptation mode, with an explicit audio pool and preview grids.

    The preview grid (``images/preview_masked_own_other_truth-<step>.png``) has one column per fixed training
    window (8, spread over the clip) and one row each for the masked input, the output with the target's own
    audio, the output with pool audio (what R_sync keeps in sync) and the ground truth. Held-out frames are
    never used, not even for previews.
    """

    name = "adapt"

    def __init__(
        self, config: StyleLipSyncTrainConfig, pool: list[ClipInfo], preview_windows: int = 8
    ) -> None:
        if not (config.adapt and config.init):
            raise ValueError("AdaptationTask needs a config with adapt: true and init: MODEL_DIR")
        super().__init__(config)
        self.pool = pool
        self.preview_windows = preview_windows
        self._preview: Batch | None = None

    def train_dataset(self) -> LipSyncWindowDataset:
        pool = self.pool if self.config.lambda_reg_sync > 0 and self.pool else None
        return LipSyncWindowDataset(
            self.split()[0],
            self._data_config(),
            augment=True,
            outputs={"frames", "masked", "mouth", "ref"},
            audio_pool=pool,
        )

    def _preview_batch(self) -> Batch:
        if self._preview is None:
            ds = LipSyncWindowDataset(
                self.split()[0],
                self._data_config(),
                augment=False,
                outputs={"frames", "masked", "ref"},
                audio_pool=self.pool or None,
            )
            idx = np.linspace(0, len(ds) - 1, self.preview_windows).round().astype(int)
            self._preview = default_collate([ds[(int(i), 7919 + int(i))] for i in idx])
        return self._preview

    @torch.no_grad()
    def images(self, step: int) -> dict[str, torch.Tensor]:
        b = self.trainer.to_device(self._preview_batch())
        self.model.eval()
        c = b["masked"].shape[1] // 2
        own = self.model(b["masked"], self._generator_mel(b), b["ref"], noise_mode="const")
        rows = [b["masked"][:, c], own[:, c]]
        if "reg_mel" in b:
            reg = {"mel": b["reg_mel"], "mel_mean": b["reg_mel_mean"], "mel_std": b["reg_mel_std"]}
            other = self.model(b["masked"], self._generator_mel(reg), b["ref"], noise_mode="const")
            rows.append(other[:, c])
        rows.append(b["frames"][:, c])
        self._train_mode()
        return {"preview_masked_own_other_truth": torch.cat(rows, dim=0)}


def save_preview(task: AdaptationTask, folder: Path, step: int) -> None:
    """The preview grid of the final step as PNG (the trainer writes the periodic ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in task.images(step).items():
        grid = image_grid(batch)
        rgb = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        cv2.imwrite(str(folder / f"{name}-{step:08d}.png"), rgb[:, :, ::-1])


__all__ = ["AdaptationTask", "save_preview"]
