"""Image metrics between generated and reference frames: PSNR, SSIM and (with weights) LPIPS.

Meaningful in the reconstruction setting (the driving audio is the reference video's own), where the
reference frame is the ground truth; in cross-audio dubbing they only measure how much the frame changed.

* PSNR: 8-bit RGB, data range 255; identical frames count as `PSNR_IDENTICAL` dB instead of infinity.
* SSIM: scikit-image `structural_similarity` with Wang et al.'s settings (Gaussian window σ = 1.5,
  population covariance), per RGB channel then averaged.
* LPIPS-VGG: the network of `stylelipsync.losses.perceptual` with a user-given state dict (VGG16 features +
  the LPIPS linear heads); images scaled to [−1, 1].
FID, a set-level metric over face crops, is in `fid` (distance) and `inception` (network).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

from stylelipsync.errors import CheckpointError
from stylelipsync.losses.perceptual import LPIPS

PSNR_IDENTICAL = 100.0
LPIPS_HELP = (
    "LPIPS needs a state dict of lpips.LPIPS(net='vgg') (VGG16 features + linear heads), or a torchvision "
    "vgg16 state dict merged with the LPIPS heads (lin0..lin4.model.1.weight); pass --lpips-weights PATH."
)


def match_size(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`image` resized (area interpolation) to the size of `like` if they differ."""
    if image.shape[:2] == like.shape[:2]:
        return image
    return cv2.resize(image, (like.shape[1], like.shape[0]), interpolation=cv2.INTER_AREA)


def psnr(generated: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of two uint8 RGB images of the same size."""
    mse = float(np.mean((generated.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return PSNR_IDENTICAL if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(generated: np.ndarray, reference: np.ndarray) -> float:
    """Mean SSIM of two uint8 RGB images of the same size (Gaussian σ 1.5, channels averaged)."""
    return float(
        structural_similarity(
            reference, generated, channel_axis=2, data_range=255,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
    )  # fmt: skip


class LPIPSMetric:
    """LPIPS-VGG distance of uint8 RGB image pairs, from a weights file."""

    def __init__(self, path: str | Path) -> None:
        if not Path(path).is_file():
            raise CheckpointError(f"LPIPS weights not found at {path}. {LPIPS_HELP}")
        try:
            self.net = LPIPS.from_file(path)
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{path}: not an LPIPS-VGG state dict ({exc}). {LPIPS_HELP}") from exc

    @staticmethod
    def _tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]

    @torch.inference_mode()
    def distance(self, generated: np.ndarray, reference: np.ndarray) -> float:
        """LPIPS distance (lower = more similar)."""
        return float(self.net(self._tensor(generated), self._tensor(reference))[0])
