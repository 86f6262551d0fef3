"""The interface every rendering engine implements, so the pipeline (decode, track, plan, mux) stays one.

An engine turns the planned output timeline into pixels inside the pose-aware mask. The pipeline calls it
twice per job:

* `collector(inputs)` before pass 1: an optional per-frame hook that sees every decoded source frame with its
  raw landmarks while the tracker has it (the mouth bank keeps face crops there, so nothing is decoded twice);
* `render(inputs, plan, sources, collected, …)` after pass 1: writes every output frame and returns an
  `EngineReport`.

A new engine is a new folder under `engines/` with a class registered in `engines.registry`; `from_spec`
builds it from an `EngineSpec` (the default: a class that takes no settings).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

    from stylelipsync.pipelines.engines.spec import EngineSpec
    from stylelipsync.pipelines.options import GenerateOptions
    from stylelipsync.pipelines.plan import Callback, Progress, RenderPlan, StageTimer
    from stylelipsync.pipelines.sources import SourceFrames


@dataclass
class EngineInputs:
    """What an engine knows about one job before pass 1: the speech, the timeline's rate and the source."""

    wave: NDArray[np.float32]
    """The speech, mono float32 at 16 kHz."""
    fps: float
    num_frames: int
    """Output frames."""
    audio_frames: int
    """Output frames covered by the audio (the rest, with `trim=False`, are silent)."""
    num_source: int
    is_image: bool
    options: GenerateOptions


class FrameCollector(Protocol):
    """Pass-1 hook: `(t, frame, raw landmarks or None)` for every source frame; `close()` frees its data."""

    def __call__(self, t: int, frame: NDArray[np.uint8], landmarks: NDArray[np.float32] | None) -> None: ...

    def close(self) -> None: ...


@dataclass
class EngineReport:
    """What `render` reports back: frames that had a face, and warnings for the user (also in the summary)."""

    frames_with_face: int
    warnings: list[str] = field(default_factory=list)
    details: dict[str, float] = field(default_factory=dict)


class Engine(ABC):
    """A renderer of the lower face; see the module docstring."""

    name: ClassVar[str]
    preload: ClassVar[bool] = False
    """True: a pipeline made for this engine builds it at once (loading model weights there shows a bad
    checkpoint before any job); False: on its first call."""

    @classmethod
    def from_spec(cls, spec: EngineSpec, device: str | torch.device | None = None) -> Engine:
        """The engine `spec` describes, on `device` if it runs a network (see `loader.load_engine`)."""
        return cls()

    def collector(self, inputs: EngineInputs) -> FrameCollector | None:
        """A pass-1 hook, or None if this engine needs nothing but the landmarks."""
        return None

    @abstractmethod
    def render(
        self,
        inputs: EngineInputs,
        plan: RenderPlan,
        sources: SourceFrames,
        collected: FrameCollector | None,
        timer: StageTimer,
        callback: Callback | None,
        progress: Progress,
        pipelined: bool,
    ) -> EngineReport:
        """Write every output frame of `plan` into its output file(s)."""
