"""Inception-v3 as used for FID: the 2048-d pool features of the 2015-12-05 TensorFlow graph.

FID numbers are only comparable when they come from the same network. The de-facto standard is the
TensorFlow Inception graph of 2015-12-05 that the original FID code used, which pytorch-fid ships converted
to PyTorch as `pt_inception-2015-12-05-6726825d.pth`. This module rebuilds that network with the same
module names, so that file loads strictly:

* `Conv2d_1a_3x3` … `Conv2d_4a_3x3`, `Mixed_5b` … `Mixed_7c`, `fc` (1008 classes, unused for FID); every
  convolution is `<name>.conv` (no bias) + `<name>.bn` (BatchNorm, eps 1e-3) + ReLU.
* It differs from a plain ImageNet Inception-v3 where the TensorFlow graph does: the average pools of the
  A, C and first E blocks (`Mixed_5b-5d`, `Mixed_6b-6e`, `Mixed_7b`) leave the zero padding out of the
  average (TensorFlow's SAME average pooling does), and the pool branch of the last block (`Mixed_7c`) is
  a 3 × 3 max pool, not an average pool.
* Input: RGB in [0, 1], resized bilinearly (no antialiasing, half-pixel centres) to 299 × 299, then scaled
  to [−1, 1]. Output: the 2048-d global average of the last block.

The weights are never downloaded: `load_fid_inception` reads a file the user names (`--fid-weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylelipsync.errors import CheckpointError

FEATURE_DIM = 2048
NUM_CLASSES = 1008
INPUT_SIZE = 299
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
FID_HELP = (
    f"FID needs the pytorch-fid Inception-v3 weights {FID_WEIGHTS_NAME} (about 91 MB; fetch "
    f"{FID_WEIGHTS_URL} on a machine with internet access); pass --fid-weights PATH."
)

Size = int | tuple[int, int]


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3, as the TensorFlow graph) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: Size, stride: int = 1, padding: Size = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3 × 3 stride-1 average pool that, like TensorFlow's, averages over the pixels inside the image only."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35 × 35 block: 1×1, 5×5, double 3×3 and pooled branches (64 + 64 + 96 + `pool_features` channels)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """35 → 17 reduction: strided 3×3, strided double 3×3 and a max pool (384 + 96 + input channels)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17 × 17 block with factorised 7×7 convolutions (4 × 192 channels)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """17 → 8 reduction: strided 3×3, strided 7×7-then-3×3 and a max pool (320 + 192 + input channels)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8 × 8 block with split 1×3 / 3×1 branches (320 + 768 + 768 + 192 = 2048 channels).

    `max_pool` selects the pool branch's pooling: the TensorFlow graph's last block (`Mixed_7c`) uses a
    3 × 3 max pool, the one before (`Mixed_7b`) an average pool without the padding.
    """

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(s),
                self.branch3x3_2b(s),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: (N, 3, H, W) RGB in [0, 1] → (N, 2048) pool features (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # the logits: in the weights file, not used for FID

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        blocks: tuple[nn.Module, ...] = (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
            self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c,
        )  # fmt: skip
        for block in blocks:
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    @torch.inference_mode()
    def features(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(N, 2048) float64 features of N uint8 RGB images of one size (H, W, 3)."""
        batch = np.stack(list(images)) if isinstance(images, list) else np.asarray(images)
        param = next(self.parameters())
        x = torch.from_numpy(batch).to(param.device).permute(0, 3, 1, 2).to(param.dtype) / 255.0
        return self(x).double().cpu().numpy()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .pth/.pt (torch.load, weights_only) or .safetensors file."""
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a PyTorch state dict ({exc}). {FID_HELP}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: is not a state dict of tensors. {FID_HELP}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _some(keys: set[str], limit: int = 4) -> str:
    names = sorted(keys)
    return ", ".join(names[:limit]) + (f" … ({len(names)} in all)" if len(names) > limit else "")


def load_fid_inception(path: str | Path, device: str = "cpu") -> FIDInceptionV3:
    """`FIDInceptionV3` in eval mode with the weights of `path`, loaded strictly.

    BatchNorm `num_batches_tracked` counters (which FID never uses) may be absent from the file and are then
    set to zero; every other tensor must be present under the pytorch-fid name with the right shape.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"FID Inception weights not found at {p}. {FID_HELP}")
    state = _read_state(p)
    model = FIDInceptionV3()
    expected = model.state_dict()
    for key in expected:
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, torch.tensor(0))
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        parts = [f"{len(missing)} missing ({_some(missing)})"] if missing else []
        parts += [f"{len(unexpected)} unexpected ({_some(unexpected)})"] if unexpected else []
        raise CheckpointError(
            f"{p}: not the pytorch-fid Inception-v3 state dict: keys {'; '.join(parts)}. {FID_HELP}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{p}: tensor shapes do not match the FID Inception-v3 ({exc}). {FID_HELP}"
        ) from exc
    return model.to(device).eval()
