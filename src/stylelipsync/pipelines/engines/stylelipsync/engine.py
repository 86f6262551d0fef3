"""`StyleLipSyncEngine`: the network of the paper (or the shipped demo model) renders the lower face.

Pass 2 is `pipelines.render.Renderer` (encoders → streaming MaLS → decoder → composite), unchanged; this
class only holds the loaded network and its inference runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from stylelipsync.models import InferenceRunner, StyleLipSync
from stylelipsync.pipelines.audio_drive import AudioDrive
from stylelipsync.pipelines.engines.base import Engine, EngineInputs, EngineReport, FrameCollector
from stylelipsync.pipelines.engines.device import resolve_device
from stylelipsync.pipelines.engines.stylelipsync.checkpoint import load_model

if TYPE_CHECKING:
    from stylelipsync.pipelines.engines.spec import EngineSpec
    from stylelipsync.pipelines.plan import Callback, Progress, RenderPlan, StageTimer
    from stylelipsync.pipelines.sources import SourceFrames


class StyleLipSyncEngine(Engine):
    """Renders with a `StyleLipSync` network on `device` (`precision`, `compile` as in `InferenceRunner`)."""

    name = "stylelipsync"
    preload = True

    def __init__(
        self, model: StyleLipSync, device: torch.device, precision: str = "fp32", compile: bool | str = False
    ) -> None:
        self.device = device
        self.model = model.to(device).eval()
        self.model.set_kernels("fast")  # rendering builds no graph: fast kernels, or an error
        self.runner = InferenceRunner(self.model, device, precision=precision, compile=compile)

    @classmethod
    def from_spec(cls, spec: EngineSpec, device: str | torch.device | None = None) -> StyleLipSyncEngine:
        """Load the spec's model (None: the shipped demo) onto `device` (None or "auto": CUDA if there is
        one)."""
        model = load_model(spec.checkpoint, spec.w_avg)
        return cls(model, resolve_device(device), precision=spec.precision, compile=spec.compile)

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
        from stylelipsync.pipelines.render import Renderer

        norm = str(getattr(self.model.config, "mel_normalization", "none"))
        drive = AudioDrive(
            inputs.wave, inputs.fps, inputs.num_frames, inputs.audio_frames, inputs.options.keep_silence, norm
        )
        renderer = Renderer(
            self.runner, self.device, plan, sources, drive, timer, callback, progress, pipelined
        )
        return EngineReport(frames_with_face=renderer.run())
