"""Rendering engines behind one interface (`base.Engine`): the pipeline tracks, plans and muxes; an engine
draws the lower face.

* `bank` (the default without a checkpoint): real mouths from the person's own video, chosen by the speech;
* `stylelipsync`: the StyleLipSync network (a model folder, the official checkpoint or the shipped demo).

`registry` names them (a new engine is one new folder and one line there), `spec.EngineSpec` says which to
build and with what, and `loader.load_engine(spec, device)` builds one. This package itself imports no engine
(and no PyTorch): naming and checking an engine is cheap, and the engines may use the pipeline's modules
without an import cycle.
"""

from __future__ import annotations

from stylelipsync.pipelines.engines.base import Engine, EngineInputs, EngineReport, FrameCollector
from stylelipsync.pipelines.engines.registry import DEFAULT_ENGINE, ENGINES, check_engine
from stylelipsync.pipelines.engines.spec import EngineSpec

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "Engine",
    "EngineInputs",
    "EngineReport",
    "EngineSpec",
    "FrameCollector",
    "check_engine",
]
