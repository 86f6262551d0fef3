"""Load the official StyleLipSync release checkpoint (``{"G": state_dict}`` + ``w_avg.pth``, spec §7).

Our module names equal the official ones, so the 422 keys load one-to-one after stripping DDP ``module.``
prefixes; ``w_avg`` (not in the official state dict) is supplied separately.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .config import StyleLipSyncConfig
from .stylelipsync import StyleLipSync, describe_mismatch

DDP_PREFIX = "module."


def _torch_load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found; pass the path of the downloaded official file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for unreadable files
        raise CheckpointError(
            f"{path}: cannot read {what} ({type(exc).__name__}: {exc}); re-download the file"
        ) from exc


def official_state_dict(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    """The generator state dict of a loaded official checkpoint, with every ``module.`` substring removed."""
    if (
        not isinstance(checkpoint, Mapping)
        or "G" not in checkpoint
        or not isinstance(checkpoint["G"], Mapping)
    ):
        found = (
            sorted(map(str, checkpoint.keys()))[:5]
            if isinstance(checkpoint, Mapping)
            else type(checkpoint).__name__
        )
        raise CheckpointError(
            f"{path}: not an official StyleLipSync checkpoint (expected a dict with a 'G' state dict, "
            f"found {found}); "
            f"use the released generator file, e.g. ckpts/AlexandriaOcasioCortez_0_3k.pth"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in checkpoint["G"].items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: entry {key!r} of 'G' is not a tensor; the file is not a generator checkpoint"
            )
        state[str(key).replace(DDP_PREFIX, "")] = value
    return state


def _resolve_w_avg(w_avg: str | Path | torch.Tensor | None, style_dim: int) -> torch.Tensor:
    if w_avg is None:
        warnings.warn(
            "load_official_checkpoint: no w_avg given, using zeros; pass the official ckpts/w_avg.pth "
            "or the outputs will not match the official model",
            stacklevel=3,
        )
        return torch.zeros(style_dim)
    source = "w_avg tensor"
    if isinstance(w_avg, str | Path):
        path = Path(w_avg)
        source = str(path)
        loaded = _torch_load(path, "w_avg file")
        if isinstance(loaded, Mapping):
            if "w_avg" not in loaded:
                raise CheckpointError(
                    f"{path}: expected a dict with key 'w_avg' (the official w_avg.pth layout)"
                )
            loaded = loaded["w_avg"]
        w_avg = loaded
    if not isinstance(w_avg, torch.Tensor) or w_avg.numel() != style_dim:
        shape = list(w_avg.shape) if isinstance(w_avg, torch.Tensor) else type(w_avg).__name__
        raise CheckpointError(
            f"{source}: w_avg must hold {style_dim} values (shape [{style_dim}]), found {shape}"
        )
    return w_avg.detach().reshape(style_dim).to(torch.float32)


def load_official_checkpoint(
    ckpt_path: str | Path,
    w_avg: str | Path | torch.Tensor | None = None,
    config: StyleLipSyncConfig | None = None,
    device: str | torch.device | None = None,
) -> StyleLipSync:
    """Build ``StyleLipSync`` (paper config by default) from an official ``.pth`` file; eval mode.

    ``w_avg``: the official ``w_avg.pth`` (``{"w_avg": tensor[512]}``), a tensor, or ``None`` (zeros, with a
    warning). The load is strict: missing, unexpected or mis-shaped keys raise ``CheckpointError``.
    """
    path = Path(ckpt_path)
    config = config if config is not None else StyleLipSyncConfig.paper()
    state = official_state_dict(_torch_load(path, "checkpoint"), path)
    with torch.device("meta"):
        model = StyleLipSync(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "w_avg"}
    mismatch = describe_mismatch(expected, {k: v.shape for k, v in state.items()})
    if mismatch:
        raise CheckpointError(
            f"{path}: the checkpoint does not fit the StyleLipSync architecture ({mismatch}); "
            f"use the official generator checkpoint with the paper config"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    state["w_avg"] = _resolve_w_avg(w_avg, config.style_dim)
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device=device if device is not None else "cpu")
    return model.eval()
