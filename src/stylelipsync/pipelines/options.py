"""What a `generate` call takes (`GenerateOptions`), reports per frame (`FrameOutput`) and returns
(`GenerateResult`).

`GenerateOptions` is the one definition of the generate options: each field carries an `OptionSpec` (its
accepted values, how it is written as text, its help). The command-line options
(`cli_common.generate_option`), the service's form fields and schema (`serve.app`) and the jobs CSV columns
(`batch.jobs`) are built from these specs, so every entry point accepts the same values and rejects a bad one
with the same message (`OptionError`). Imports neither torch nor the media stack.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stylelipsync.pipelines.engines import ENGINES
from stylelipsync.pipelines.timeline import LoopMode

if TYPE_CHECKING:
    import torch

TRUE_WORDS = ("true", "yes", "y", "on", "1")
FALSE_WORDS = ("false", "no", "n", "off", "0")
"""The words a yes/no option takes as text (any case), whatever the entry point."""


class OptionError(ValueError):
    """A generate option's value that cannot be read or is out of range; `name` is the option."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, kw_only=True)
class OptionSpec(ABC):
    """Which values one generate option takes and how it is written as text (a command-line value, a form
    field, a CSV cell). Subclasses say what they accept in words (`expect`), read text (`read`) and check a
    value (`accepts`); `parse` and `check` turn a refusal into the option's one message."""

    help: str

    @property
    @abstractmethod
    def expect(self) -> str:
        """The accepted values in words: the message is "<name> must be <expect>; got <value>"."""

    @abstractmethod
    def read(self, text: str) -> Any:
        """The value `text` (stripped) stands for; `ValueError` if it stands for none."""

    @abstractmethod
    def accepts(self, value: Any) -> bool:
        """True if `value` (already typed) is one this option takes."""

    def parse(self, name: str, text: str) -> Any:
        """The value of option `name` written as `text`; `OptionError` if it is unreadable or out of range."""
        text = text.strip()
        try:
            value = self.read(text)
        except ValueError:
            raise self.error(name, text) from None
        if not self.accepts(value):
            raise self.error(name, text)
        return value

    def check(self, name: str, value: Any) -> None:
        """`OptionError` unless `value` is one option `name` takes."""
        if not self.accepts(value):
            raise self.error(name, value)

    def error(self, name: str, given: Any) -> OptionError:
        """The one message for a bad value of option `name`."""
        return OptionError(name, f"{name} must be {self.expect}; got {given!r}")


@dataclass(frozen=True, kw_only=True)
class Whole(OptionSpec):
    """A whole number from `low` to `high` (no upper bound if None)."""

    low: int
    high: int | None = None

    @property
    def expect(self) -> str:
        if self.high is None:
            return f"a whole number, {self.low} or more"
        return f"a whole number from {self.low} to {self.high}"

    def read(self, text: str) -> int:
        return int(text)

    def accepts(self, value: Any) -> bool:
        whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
        return bool(whole and self.low <= value and (self.high is None or value <= self.high))


@dataclass(frozen=True, kw_only=True)
class Number(OptionSpec):
    """A number from `low` to `high`, both included."""

    low: float
    high: float

    @property
    def expect(self) -> str:
        return f"a number from {self.low:g} to {self.high:g}"

    def read(self, text: str) -> float:
        return float(text)

    def accepts(self, value: Any) -> bool:
        number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
        return bool(number and self.low <= value <= self.high)


@dataclass(frozen=True, kw_only=True)
class YesNo(OptionSpec):
    """True or false: `TRUE_WORDS` / `FALSE_WORDS` as text (a flag on the command line)."""

    @property
    def expect(self) -> str:
        return "true or false (also yes/no, y/n, on/off, 1/0)"

    def read(self, text: str) -> bool:
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(text)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool | np.bool_)


@dataclass(frozen=True, kw_only=True)
class OneOf(OptionSpec):
    """One of `choices` (any case as text)."""

    choices: tuple[str, ...]

    @property
    def expect(self) -> str:
        return f"{', '.join(self.choices[:-1])} or {self.choices[-1]}"

    def read(self, text: str) -> str:
        return text.lower()

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices


@dataclass(frozen=True, kw_only=True)
class Box(OptionSpec):
    """A face box X0,Y0,X1,Y1 in pixels of the first frame (commas, semicolons or spaces between)."""

    @property
    def expect(self) -> str:
        return "X0,Y0,X1,Y1 in pixels with X1 > X0 and Y1 > Y0, e.g. 100,80,420,460"

    def read(self, text: str) -> tuple[int, ...]:
        parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
        return tuple(int(float(p)) for p in parts)

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
            return False
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value):
            return False
        x0, y0, x1, y1 = value
        return bool(x1 > x0 and y1 > y0)


@dataclass(frozen=True, kw_only=True)
class FilePath(OptionSpec):
    """A file path (relative to the CSV's folder in a jobs file)."""

    @property
    def expect(self) -> str:
        return "a file path"

    def read(self, text: str) -> str:
        return text

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | PathLike) and str(value) != ""


@dataclass(frozen=True, kw_only=True)
class FilePaths(OptionSpec):
    """Several file paths: a list in Python, `;` between them as text, the flag repeated on the command
    line."""

    @property
    def expect(self) -> str:
        return "a list of file paths (as text: separated by ;)"

    def read(self, text: str) -> tuple[str, ...]:
        paths = tuple(part.strip() for part in text.split(";") if part.strip())
        if not paths:
            raise ValueError(text)
        return paths

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and all(isinstance(p, str | PathLike) and str(p) != "" for p in value)
        )


@dataclass
class GenerateOptions:
    """Options of one `generate` call; the CLI flags, the service's form fields and the jobs CSV columns have
    the same names (docs/generate.md). Each field's spec (`OPTION_SPECS`) holds its accepted values and help.

    Two ranges are deliberately narrower than some entry points once allowed:

    * `fps` 1–120. Below 1 frame per second a mouth cannot follow speech at all; the mel spectrogram has 100
      rows per second, so frames above 100 fps get no new audio, and 120 still covers high-frame-rate phone
      video. (The Python API allowed (0, 240], the CLI and the service 1–120.)
    * `batch_size` 1–64. It changes speed and memory, never the result; a GPU is full at 16–32 frames per
      call (docs/generate.md, *Performance*) while about 4 × batch_size + 3 full-resolution frames are in
      flight (1080p at 256: over 6 GB), so more only costs memory. 64 is what the service allowed a client;
      the command line allowed 256, the Python API had no upper bound.
    """

    batch_size: int = field(
        default=8,
        metadata={
            "spec": Whole(low=1, high=64, help="Frames per network call: speed and memory, never the result.")
        },
    )
    fps: float | None = field(
        default=None,
        metadata={
            "spec": Number(
                low=1,
                high=120,
                help="Output frame rate. Default: the input video's (its nominal rate if variable; 25 for a "
                "photo).",
            )
        },
    )
    face_index: int | None = field(
        default=None,
        metadata={
            "spec": Whole(low=0, help="With several faces: 0 = largest (the default), 1 = next largest, …")
        },
    )
    bbox: tuple[int, int, int, int] | None = field(
        default=None,
        metadata={"spec": Box(help="X0,Y0,X1,Y1: dub the face inside this box (pixels of the first frame).")},
    )
    reference_frame: int | None = field(
        default=None,
        metadata={
            "spec": Whole(
                low=0,
                help="Source frame used as the identity reference. Default: the first frame with a face.",
            )
        },
    )
    loop: LoopMode | str = field(
        default=LoopMode.PINGPONG,
        metadata={
            "spec": OneOf(
                choices=tuple(mode.value for mode in LoopMode),
                help="How to extend a video shorter than the audio (pingpong never jumps at the seam).",
            )
        },
    )
    trim: bool = field(
        default=True,
        metadata={
            "spec": YesNo(
                help="On: the output lasts as long as the audio. Off: keep the whole video when it is "
                "longer; the mouth closes after the audio ends."
            )
        },
    )
    keep_silence: bool = field(
        default=False,
        metadata={
            "spec": YesNo(
                help="Let the audio drive the mouth during silence too (default: close the mouth on silent "
                "stretches)."
            )
        },
    )
    crop_output: Path | str | None = field(
        default=None,
        metadata={"spec": FilePath(help="Also write the 256² composite face crops to this MP4.")},
    )
    overwrite: bool = field(
        default=False, metadata={"spec": YesNo(help="Replace an existing output file (never an input).")}
    )
    engine: str | None = field(
        default=None,
        metadata={
            "spec": OneOf(
                choices=ENGINES,
                help="Renderer. bank: real mouths from the person's own video, chosen by the speech (the "
                "default without a checkpoint). stylelipsync: the network (the default with a checkpoint; "
                "the shipped demo model without one).",
            )
        },
    )
    bank_video: tuple[str, ...] = field(
        default=(),
        metadata={
            "spec": FilePaths(
                help="Another video (or photo) of the same person whose mouths the bank engine may use too; "
                "repeat it for several. Bank engine only."
            )
        },
    )

    @classmethod
    def from_strings(cls, texts: Mapping[str, str]) -> GenerateOptions:
        """Options from text values by option name (form fields, CSV cells); `OptionError` on a bad one."""
        return cls().updated(**parse_strings(texts))

    def updated(self, **changes: Any) -> GenerateOptions:
        """A validated copy with `changes` applied; unknown names raise `TypeError`."""
        _check_names(changes)
        new = replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """`OptionError` (a `ValueError`) for a value outside its spec or a combination that means nothing."""
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            if value is None and spec_field.default is None:
                continue
            spec_field.metadata["spec"].check(spec_field.name, value)
        if self.face_index is not None and self.bbox is not None:
            raise OptionError("bbox", "give face_index or bbox, not both")
        self.bank_video = tuple(str(p) for p in self.bank_video)
        if self.bank_video and self.engine == "stylelipsync":
            raise OptionError("bank_video", "bank_video goes with the bank engine, not stylelipsync")


OPTION_SPECS: dict[str, OptionSpec] = {f.name: f.metadata["spec"] for f in fields(GenerateOptions)}
"""Every generate option's spec, by name (the order of `GenerateOptions`' fields)."""


def _check_names(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(OPTION_SPECS))
    if unknown:
        raise TypeError(f"unknown generate option(s): {', '.join(unknown)}")


def parse_option(name: str, text: str) -> Any:
    """The value of generate option `name` written as `text`; `OptionError` with its one message if bad."""
    _check_names({name: text})
    return OPTION_SPECS[name].parse(name, text)


def parse_strings(texts: Mapping[str, str]) -> dict[str, Any]:
    """Text values by option name → typed values (`OptionError` at the first bad one, `TypeError` for an
    unknown name). Paths stay as written: the caller decides what they are relative to."""
    _check_names(texts)
    return {name: OPTION_SPECS[name].parse(name, text) for name, text in texts.items()}


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
