"""Rendering engines behind one interface (`base.Engine`): the pipeline tracks, plans and muxes; an engine
draws the lower face.

* `bank` (the default without a checkpoint): real mouths from the person's own video, chosen by the speech;
* `stylelipsync`: the StyleLipSync network (a model folder, the official checkpoint or the shipped demo).

`ENGINES` names them; `create_engine` builds one. A new engine is one new folder and one line here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stylelipsync.engines.base import Engine, EngineInputs, EngineReport, FrameCollector

ENGINES = ("bank", "stylelipsync")
DEFAULT_ENGINE = "bank"

if TYPE_CHECKING:
    import torch


def check_engine(name: str) -> str:
    """The engine name, or `ValueError` listing the valid ones."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    return name


def create_engine(
    name: str,
    checkpoint: str | Path | None = None,
    w_avg: str | Path | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
    compile: bool | str = False,
) -> Engine:
    """Build engine `name`; `checkpoint`/`w_avg`/`precision`/`compile` concern the `stylelipsync` engine (None
    checkpoint = the shipped demo model)."""
    check_engine(name)
    if name == "bank":
        from stylelipsync.engines.bank import MouthBankEngine

        return MouthBankEngine()
    import torch

    from stylelipsync.engines.stylelipsync import StyleLipSyncEngine
    from stylelipsync.pipelines.lipsync import load_model

    return StyleLipSyncEngine(
        load_model(checkpoint, w_avg), device or torch.device("cpu"), precision=precision, compile=compile
    )


__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "Engine",
    "EngineInputs",
    "EngineReport",
    "FrameCollector",
    "check_engine",
    "create_engine",
]
