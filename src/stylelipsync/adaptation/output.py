"""The person model folder (``PERSON_DIR``): refuse to write over what must survive, publish atomically.

The model is written as ``config.json``, ``model.safetensors``, ``training.json`` and ``adapt.json``, each
through a temporary name and a rename, ``adapt.json`` last, so a failure never leaves a half model. The work
folder of a run (checkpoints, preview grids, the preprocessed data) is ``PERSON_DIR/.adapt_run``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from stylelipsync.errors import OutputError
from stylelipsync.models.stylelipsync import CONFIG_FILE, WEIGHTS_FILE
from stylelipsync.training.train_stylelipsync import TRAINING_INFO_FILE
from stylelipsync.training.trainer import latest_checkpoint

RUN_DIR_NAME = ".adapt_run"
ADAPT_INFO_FILE = "adapt.json"
PREVIEW_FILE = "preview.mp4"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON at ``path``, through a temporary name and a rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary name and a rename."""
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def check_output(base: Path, output: Path, run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to write over the base model, a file, a finished model or an earlier run by accident."""
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: is a file; --output names a folder for the person model")
    if base.is_dir() and output.resolve() == base.resolve():
        raise OutputError(f"{output}: is the base model's folder; write the person model to another folder")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and not resume:
        raise OutputError(
            f"{run_dir}: holds checkpoints of an earlier adaptation ({ckpt.name}); pass --resume to "
            "continue it, or delete that folder to start over"
        )
    if (output / WEIGHTS_FILE).is_file() and not (resume or overwrite):
        raise OutputError(
            f"{output}: already holds a model; pass --overwrite to replace it or --resume to continue "
            "its adaptation"
        )
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{output}: cannot create the output folder ({exc.strerror})") from exc


def publish(export: Path, output: Path, info: dict[str, Any]) -> None:
    """Copy the trainer's export into ``output`` file by file through temporary names, ``adapt.json`` last."""
    for name in (WEIGHTS_FILE, CONFIG_FILE, TRAINING_INFO_FILE):
        copy_atomic(export / name, output / name)
    write_json_atomic(output / ADAPT_INFO_FILE, info)


__all__ = [
    "ADAPT_INFO_FILE",
    "PREVIEW_FILE",
    "RUN_DIR_NAME",
    "check_output",
    "copy_atomic",
    "publish",
    "write_json_atomic",
]
