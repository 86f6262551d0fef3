"""Dubbing pipelines: `LipSyncPipeline` (video or photo + speech → dubbed video) and its streaming parts."""

from stylelipsync.pipelines.lipsync import LipSyncPipeline, default_checkpoint, load_model
from stylelipsync.pipelines.options import FrameOutput, GenerateOptions, GenerateResult
from stylelipsync.pipelines.timeline import LoopMode

__all__ = [
    "FrameOutput",
    "GenerateOptions",
    "GenerateResult",
    "LipSyncPipeline",
    "LoopMode",
    "default_checkpoint",
    "load_model",
]
