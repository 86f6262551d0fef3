"""Where a network runs: the user's `--device` as a `torch.device` (PyTorch imported only when resolving)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stylelipsync.errors import StyleLipSyncError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' → CUDA if available, else CPU; asking for CUDA without a GPU is a user error."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise StyleLipSyncError(f"unknown device {device!r}; use auto, cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StyleLipSyncError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return dev
