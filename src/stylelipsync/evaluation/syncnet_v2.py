"""SyncNet v2 of Chung & Zisserman ("Out of time", ACCV-W 2016): the network behind LSE-D / LSE-C.

Written from the published architecture with the module and parameter names of syncnet_python's
`SyncNetModel.S`, so the standard `syncnet_v2.model` state dict loads strictly:

* audio: `netcnnaud` (2-D convs on a 1 × 13 × 20 MFCC block = 0.2 s) → 512 → `netfcaud` (Linear, BN, ReLU,
  Linear) → 1024;
* lips: `netcnnlip` (3-D convs on 3 × 5 × 224 × 224 raw 0–255 BGR frames) → 512 → `netfclip` → 1024.

The weights cannot be downloaded by this package; `load_syncnet_v2(path)` reads a user-given file with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stylelipsync.errors import CheckpointError

EMBEDDING = 1024
WEIGHTS_HELP = (
    "LSE-D/LSE-C need the pretrained SyncNet v2 weights `syncnet_v2.model` of joonson/syncnet_python "
    "(its download_model.sh fetches them from the VGG server; ~52 MB). Download it on a machine with "
    "internet access and pass --syncnet-weights /path/to/syncnet_v2.model."
)


def _conv2d(
    cin: int, cout: int, kernel: tuple[int, int], padding: tuple[int, int] = (1, 1)
) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _conv3d(
    cin: int,
    cout: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int] = (1, 1, 1),
    padding: tuple[int, int, int] = (0, 1, 1),
) -> list[nn.Module]:
    return [
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    ]


def _head(out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out))


class SyncNetV2(nn.Module):
    """Two-stream SyncNet; `forward_aud` [B,1,13,20] → [B,1024], `forward_lip` [B,3,5,224,224] → [B,1024]."""

    def __init__(self, embedding: int = EMBEDDING) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2d(1, 64, (3, 3)),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            *_conv2d(64, 192, (3, 3)),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            *_conv2d(192, 384, (3, 3)),
            *_conv2d(384, 256, (3, 3)),
            *_conv2d(256, 256, (3, 3)),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            *_conv2d(256, 512, (5, 4), padding=(0, 0)),
        )
        self.netfcaud = _head(embedding)
        self.netfclip = _head(embedding)
        self.netcnnlip = nn.Sequential(
            *_conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2), padding=(0, 0, 0)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3)),
            *_conv3d(256, 256, (1, 3, 3)),
            *_conv3d(256, 256, (1, 3, 3)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d(256, 512, (1, 6, 6), padding=(0, 0, 0)),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """MFCC blocks [B, 1, 13, 20] → audio embeddings [B, 1024]."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """Frame stacks [B, 3, 5, 224, 224] (BGR, 0–255) → video embeddings [B, 1024]."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def _clean_state(state: object, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap common containers and prefixes; add BatchNorm counters that pre-0.4.1 checkpoints lack."""
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a SyncNet state dict (expected name → tensor). {WEIGHTS_HELP}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "__S__.", "S."):
            key = key.removeprefix(prefix)
        out[key] = value
    for key in list(out):
        if key.endswith(".running_mean"):
            out.setdefault(key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0))
    return out


def load_syncnet_v2(path: str | Path, device: str | torch.device = "cpu") -> SyncNetV2:
    """SyncNet v2 in eval mode with the weights at `path` (strict: every official key, nothing else)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"SyncNet weights not found at {p}. {WEIGHTS_HELP}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{p}: cannot be read as a PyTorch state dict ({exc}). {WEIGHTS_HELP}") from exc
    model = SyncNetV2()
    try:
        model.load_state_dict(_clean_state(state, p), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{p}: does not match the SyncNet v2 layout: {exc}") from exc
    return model.to(device).eval()
