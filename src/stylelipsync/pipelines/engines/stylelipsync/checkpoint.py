"""The StyleLipSync engine's weights: a native model directory, an official `.pth` (+ `w_avg`), or the model
shipped inside the package. PyTorch and the network modules are imported only when a model is loaded."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from stylelipsync.errors import CheckpointError

if TYPE_CHECKING:
    from stylelipsync.models import StyleLipSync


def default_checkpoint() -> Path:
    """Directory of the model shipped inside the package."""
    return Path(str(resources.files("stylelipsync").joinpath("assets", "default_model")))


def load_model(path: str | Path | None, w_avg: str | Path | None = None) -> StyleLipSync:
    """A native model directory (or a file in one), an official `.pth` (+ `w_avg`), or the shipped model."""
    from stylelipsync.models import StyleLipSync, load_official_checkpoint

    if path is None:
        path = default_checkpoint()
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"no default model is shipped in this install ({path}); pass --checkpoint DIR"
            )
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a model directory or an official .pth")
    if path.is_file() and path.name in ("config.json", "model.safetensors"):
        path = path.parent
    if path.is_dir():
        if w_avg is not None:
            raise CheckpointError(
                f"--w-avg goes with an official .pth checkpoint, not a model directory ({path})"
            )
        return StyleLipSync.from_pretrained(path)
    return load_official_checkpoint(path, w_avg=w_avg)
