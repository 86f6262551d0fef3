"""Dubbing pipelines: `LipSyncPipeline` (video or photo + speech → dubbed video) and its streaming parts.

`LipSyncPipeline`, `default_checkpoint` and `load_model` are imported on first use, so that the option
definitions (`stylelipsync.pipelines.options`, read by the CLI and by the service's HTTP process) do not
bring in the media and face stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stylelipsync.pipelines.options import FrameOutput, GenerateOptions, GenerateResult
from stylelipsync.pipelines.timeline import LoopMode

if TYPE_CHECKING:
    from stylelipsync.pipelines.lipsync import LipSyncPipeline, default_checkpoint, load_model

_LIPSYNC = ("LipSyncPipeline", "default_checkpoint", "load_model")


def __getattr__(name: str) -> Any:
    if name in _LIPSYNC:
        from stylelipsync.pipelines import lipsync

        return getattr(lipsync, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FrameOutput",
    "GenerateOptions",
    "GenerateResult",
    "LipSyncPipeline",
    "LoopMode",
    "default_checkpoint",
    "load_model",
]
