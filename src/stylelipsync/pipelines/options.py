"""What a `generate` call takes (`GenerateOptions`), reports per frame (`FrameOutput`) and returns
(`GenerateResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stylelipsync.pipelines.timeline import LoopMode

if TYPE_CHECKING:
    import torch


@dataclass
class GenerateOptions:
    """Options of one `generate` call; the CLI flags have the same names (see docs/generate.md)."""

    batch_size: int = 8
    """Frames per network call. Changes speed and memory, never the result (beyond float rounding)."""
    fps: float | None = None
    """Output frame rate; None = the input video's (its nominal rate if variable), 25 for a photo."""
    face_index: int | None = None
    """With several faces: 0 = largest (the default), 1 = next largest, ..."""
    bbox: tuple[int, int, int, int] | None = None
    """(x0, y0, x1, y1) in pixels of the first frame: dub the face inside this box."""
    reference_frame: int | None = None
    """Identity reference (source frame index); None = the first frame with a face."""
    loop: LoopMode | str = LoopMode.PINGPONG
    """How to extend a video shorter than the audio."""
    trim: bool = True
    """True: output lasts as long as the audio. False: keep the whole video when it is longer."""
    keep_silence: bool = False
    """False: close the mouth on silent stretches (voice activity gates the audio styles)."""
    crop_output: Path | str | None = None
    """Also write the 256² composite face crops to this MP4."""
    overwrite: bool = False
    """Replace existing output files (never an input)."""
    engine: str | None = None
    """Renderer: "bank" (real mouths of the person's own video) or "stylelipsync" (the network); None = the
    pipeline's default ("bank" unless it was loaded from a checkpoint)."""
    bank_video: tuple[str, ...] = ()
    """Other videos (or photos) of the same person whose mouths the bank engine may use too."""

    def updated(self, **changes: Any) -> GenerateOptions:
        """A validated copy with `changes` applied; unknown names raise `TypeError`."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown generate option(s): {', '.join(unknown)}")
        new = replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise `ValueError` for values no input could make sense of."""
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.fps is not None and not 0 < self.fps <= 240:
            raise ValueError(f"fps must be in (0, 240], got {self.fps}")
        if self.face_index is not None and self.bbox is not None:
            raise ValueError("give face_index or bbox, not both")
        if self.face_index is not None and self.face_index < 0:
            raise ValueError(f"face_index must be >= 0, got {self.face_index}")
        if self.bbox is not None:
            x0, y0, x1, y1 = self.bbox
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"bbox must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {self.bbox}")
        if self.reference_frame is not None and self.reference_frame < 0:
            raise ValueError(f"reference_frame must be >= 0, got {self.reference_frame}")
        LoopMode(self.loop)
        if self.engine is not None:
            from stylelipsync.engines import check_engine

            check_engine(self.engine)
        if isinstance(self.bank_video, str | Path):
            raise ValueError("bank_video must be a list of paths, not one string")
        self.bank_video = tuple(str(p) for p in self.bank_video)
        if self.bank_video and self.engine == "stylelipsync":
            raise ValueError("bank_video goes with the bank engine, not stylelipsync")


@dataclass(frozen=True)
class FrameOutput:
    """One output frame, handed to the `callback` of a pipeline call as soon as it is written.

    `generated` is the decoder output x̂ (3, R, R) float32 on the CPU (nominally in [-1, 1], not clamped;
    None for the bank engine, which has no decoder), `composite` the engine's square uint8 RGB crop after
    compositing with the keep-mask (what is pasted back: 256² for stylelipsync, the bank's crop size for the
    bank), `transform` the (2, 3) frame → crop similarity and `keep` the float32 keep-mask K of the crop
    (1 = frame kept). All four are None for a frame without a face, which is written unchanged.
    """

    index: int
    source_index: int
    has_face: bool
    generated: torch.Tensor | None = None
    composite: np.ndarray | None = None
    transform: np.ndarray | None = None
    keep: np.ndarray | None = None


@dataclass
class GenerateResult:
    """What a `generate` call produced."""

    output_path: Path
    frames: int
    frames_with_face: int
    fps: float
    seconds: float
    width: int
    height: int
    source_frames: int
    crop_path: Path | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    engine: str = "stylelipsync"
    warnings: list[str] = field(default_factory=list)
    details: dict[str, float] = field(default_factory=dict)
    """Engine figures (for the bank: entries, coverage, cuts per second, reshaped fraction)."""

    @property
    def frames_without_face(self) -> int:
        """Frames written unchanged because no face was tracked in them."""
        return self.frames - self.frames_with_face

    @property
    def frames_per_second(self) -> float:
        """End-to-end processing speed (output frames per wall-clock second)."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        """Human-readable summary for the CLI: output, frames, faces, time."""
        no_face = self.frames_without_face
        lines = [
            f"wrote {self.output_path} ({self.width}x{self.height}, "
            f"{self.frames} frames at {self.fps:g} fps, {self.frames / self.fps:.2f} s)",
            f"faces found in {self.frames_with_face} of {self.frames} frames"
            + (f"; {no_face} without a face passed through unchanged" if no_face else ""),
            f"took {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s), {self.engine} engine",
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        if self.crop_path is not None:
            lines.append(f"face crops in {self.crop_path}")
        return "\n".join(lines)

    def stage_report(self) -> str:
        """Seconds spent per stage, largest first (for `--debug` and the benchmark)."""
        parts = sorted(self.stage_seconds.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {sec:.1f} s" for name, sec in parts)
