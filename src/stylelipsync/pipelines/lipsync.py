"""`LipSyncPipeline`: dub a video or photo with new speech, streaming, with bounded memory.

Two passes over the input. Pass 1 decodes at the output frame rate and tracks the face, keeping only
landmarks (and, when the audio outlasts the video and a ping-pong loop walks it backwards, the raw frames in
an on-disk store); decoding runs a few frames ahead on a background thread. Pass 2 (`render.Renderer`) walks
the output timeline in chunks: crop + pose-aware mask → audio and face encoders → exact streaming MaLS →
decoder → composite in the crop → feathered paste-back → H.264/AAC encode, with decoding and encoding on
their own threads so that they hide behind the network. Frames without a face are copied unchanged. The
output file appears only when complete. `precision` ("fp32", "bf16", "fp16" on CUDA) and `compile` choose how
the network runs (see `models.runtime` and docs/generate.md, Performance).

    pipe = LipSyncPipeline.from_pretrained("model_dir")
    result = pipe("person.mp4", "speech.wav", "dubbed.mp4", loop="pingpong")
    print(result.summary())

Engines are built by `engines.loader.load_engine` from an `engines.EngineSpec` (`from_spec`); `load_model`,
`default_checkpoint` (`engines.stylelipsync.checkpoint`) and `resolve_device` (`engines.device`) are
re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from stylelipsync.audio import num_mel_frames, num_video_frames
from stylelipsync.errors import FaceNotFoundError, MediaError, OutputError, StyleLipSyncError
from stylelipsync.face.crop import crop_transforms
from stylelipsync.face.geometry import FaceModel
from stylelipsync.face.landmarks import NUM_MESH
from stylelipsync.face.mask import PoseMasker
from stylelipsync.face.track import FaceTrack, track_face
from stylelipsync.formats import OUTPUT_SUFFIXES, SAMPLE_RATE
from stylelipsync.media import MediaInfo, VideoReader, load_audio, probe, read_image
from stylelipsync.media.container import check_file
from stylelipsync.media.frame_store import FrameStore
from stylelipsync.pipelines.engines import (
    DEFAULT_ENGINE,
    Engine,
    EngineInputs,
    EngineSpec,
    FrameCollector,
    check_engine,
)
from stylelipsync.pipelines.engines.device import resolve_device
from stylelipsync.pipelines.engines.loader import engine_class, load_engine
from stylelipsync.pipelines.engines.stylelipsync.checkpoint import default_checkpoint, load_model
from stylelipsync.pipelines.options import GenerateOptions, GenerateResult
from stylelipsync.pipelines.plan import CROP_SIZE, Callback, Progress, RenderPlan, StageProgress, StageTimer
from stylelipsync.pipelines.sources import SourceFrames, needs_store, open_store, prefetch
from stylelipsync.pipelines.timeline import source_indices
from stylelipsync.startup_trace import mark

if TYPE_CHECKING:
    import torch

    from stylelipsync.models import InferenceRunner, StyleLipSync

# PyTorch, and the network modules built on it, are imported only where the stylelipsync engine needs them:
# the default bank engine renders without them, and `generate` then reaches its first frame seconds sooner.
LAZY_DEVICES = ("auto", "cpu", None)
"""`device` values whose resolution (which imports PyTorch) can wait until a network needs the device."""

PHOTO_FPS = 25.0
PASS1_PREFETCH = 8
"""Frames decoded ahead of the face tracker in pass 1."""
AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
"""Sample rates AAC can carry; the output keeps the speech file's own rate when it is one of them."""


def check_output(path: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse to overwrite an input or (without `overwrite`) an existing file; prove the folder is writable.

    Done before any decoding, so a bad output path fails in a second, not after the first pass.
    """
    for source in inputs:
        if path.resolve() == source.resolve() or (path.exists() and os.path.samefile(path, source)):
            raise OutputError(
                f"{path}: is an input file and would be overwritten. Choose another output path."
            )
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"{path}: unsupported output type; use a .mp4 (or .mov/.mkv) file name.")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give the output file name, e.g. {path / 'dubbed.mp4'}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite to replace it")
    _check_writable_folder(path)


def _check_writable_folder(path: Path) -> None:
    """Create the output's folder if needed and prove a file can be created in it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as exc:
        raise OutputError(
            f"{path}: part of the output path is a file, not a folder. Fix the --output path."
        ) from exc
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the output folder ({exc.strerror}).") from exc
    probe_file = path.parent / f".{path.stem}.{secrets.token_hex(8)}.probe"
    try:
        os.close(os.open(probe_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe_file.unlink()
    except OSError as exc:
        raise OutputError(
            f"{path}: the output folder is not writable ({exc.strerror}). Choose another --output location."
        ) from exc


def face_model(track: FaceTrack, max_frames: int = 300) -> FaceModel:
    """The person's 3-D face shape from up to `max_frames` evenly spread valid frames.

    The frames are picked here, as `FaceModel.from_landmarks` would, so that only they (not the whole
    track) are converted to float64: the same shape without a transient that grows with the video.
    """
    valid = np.flatnonzero(track.valid & np.isfinite(track.landmarks[:, :NUM_MESH]).all(axis=(1, 2)))
    if valid.size > max_frames:
        valid = valid[np.linspace(0, valid.size - 1, max_frames).round().astype(int)]
    return FaceModel.from_landmarks(track.landmarks[valid], max_frames=max_frames)


@dataclass
class _Job:
    """One call's inputs, resolved: paths, rates, audio, timeline."""

    video: Path
    audio: Path
    output: Path
    crop_path: Path | None
    opts: GenerateOptions
    info: MediaInfo
    fps: float
    wave: np.ndarray
    audio_frames: int
    num_source: int
    src_idx: np.ndarray

    @property
    def needed(self) -> int:
        """Source frames pass 1 must decode: those the timeline uses, and the reference."""
        used = int(self.src_idx.max()) + 1
        return max(used, (self.opts.reference_frame or 0) + 1)


class LipSyncPipeline:
    """Tracking, planning and muxing around a rendering engine. Call it to dub one video; reuse it for many.

    Engines (`stylelipsync.pipelines.engines`): "bank" (real mouths of the person's own video chosen by the
    speech; the default without a model) and "stylelipsync" (the network). `LipSyncPipeline(model)` renders
    with that network by default; `engine=` in a call (or `GenerateOptions.engine`) picks the other one for
    that call, the shipped demo network being loaded on first use when no model was given.

    `precision`: "fp32" (default), "bf16" (autocast; fast only on CPUs with AVX512-BF16/AMX and on GPUs) or
    "fp16" (CUDA only). `compile`: wrap the face encoder and decoder in `torch.compile` (True = inductor, or
    a backend name); falls back to eager mode with a warning if compiling fails.
    """

    def __init__(
        self,
        model: StyleLipSync | None = None,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        compile: bool | str = False,
        *,
        engine: str | None = None,
    ) -> None:
        self._device_arg = device
        self._device = None if device in LAZY_DEVICES and model is None else resolve_device(device)
        self.precision, self.compile = precision, compile
        self._engines: dict[str, Engine] = {}
        self._spec: EngineSpec | None = None
        if model is not None:
            from stylelipsync.pipelines.engines.stylelipsync.engine import StyleLipSyncEngine

            self._engines["stylelipsync"] = StyleLipSyncEngine(model, self.device, precision, compile)
        self.default_engine = check_engine(
            engine or ("stylelipsync" if model is not None else DEFAULT_ENGINE)
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        w_avg: str | Path | None = None,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        compile: bool | str = False,
        engine: str | None = None,
    ) -> LipSyncPipeline:
        """A pipeline for a native model directory or an official `.pth` (+ `w_avg.pth`): the stylelipsync
        engine; with no path, the bank engine (`engine="stylelipsync"` then loads the shipped demo model)."""
        return cls.from_spec(EngineSpec.resolve(engine, path, w_avg, precision, compile), device)

    @classmethod
    def from_spec(cls, spec: EngineSpec, device: str | torch.device | None = "auto") -> LipSyncPipeline:
        """A pipeline whose default engine is the one `spec` describes (`engines.loader.load_engine`); an
        engine that loads a model is built now, so that a bad checkpoint (or an explicit device this machine
        lacks) fails here, not on the first call."""
        if device not in LAZY_DEVICES:
            device = resolve_device(device)
        pipe = cls(device=device, precision=spec.precision, compile=spec.compile, engine=spec.name)
        pipe._spec = spec
        if engine_class(spec.name).preload:
            pipe.engine(spec.name)
        return pipe

    @property
    def device(self) -> torch.device:
        """Where the network runs ("auto" and "cpu" are resolved when first needed: the bank engine never
        needs them, and resolving imports PyTorch)."""
        if self._device is None:
            self._device = resolve_device(self._device_arg)
        return self._device

    def engine(self, name: str | None = None) -> Engine:
        """The engine `name` (default: the pipeline's), built on first use."""
        name = check_engine(name or self.default_engine)
        if name not in self._engines:
            spec = self._spec if self._spec is not None and self._spec.name == name else None
            spec = spec or EngineSpec(name, precision=self.precision, compile=self.compile)
            device = self._device if self._device is not None else self._device_arg
            self._engines[name] = load_engine(spec, device)
        return self._engines[name]

    def use_engine(self, engine: Engine) -> None:
        """Render with this engine object whenever its name is asked for (e.g. a bank engine with another
        audio → mouth-shape model)."""
        self._engines[engine.name] = engine

    @property
    def model(self) -> StyleLipSync:
        """The StyleLipSync network (loading the shipped demo model if the pipeline has none yet)."""
        from stylelipsync.pipelines.engines.stylelipsync.engine import StyleLipSyncEngine

        engine = self.engine("stylelipsync")
        assert isinstance(engine, StyleLipSyncEngine)
        return engine.model

    @property
    def runner(self) -> InferenceRunner:
        """The network's inference runner (see `model`)."""
        from stylelipsync.pipelines.engines.stylelipsync.engine import StyleLipSyncEngine

        engine = self.engine("stylelipsync")
        assert isinstance(engine, StyleLipSyncEngine)
        return engine.runner

    def __call__(
        self,
        video: str | Path,
        audio: str | Path,
        output: str | Path,
        options: GenerateOptions | None = None,
        *,
        progress: Progress | StageProgress = False,
        callback: Callback | None = None,
        pipelined: bool = True,
        **overrides: Any,
    ) -> GenerateResult:
        """Dub `video` (or a photo) with `audio` into `output`; options as in `GenerateOptions`.

        `progress=True` shows progress bars; a callable gets (frames done, total), on the calling thread; a
        `StageProgress` hears the tracking, rendering and encoding stages.
        `callback` receives a `FrameOutput` for every output frame, in order, as soon as it is written (on
        the writer thread when pipelined). `pipelined=False` runs decoding and encoding on the calling
        thread too: slower, same output bit for bit.
        """
        start = time.perf_counter()
        timer = StageTimer()
        opts = (options or GenerateOptions()).updated(**overrides)
        engine = self.engine(opts.engine)
        if opts.bank_video and engine.name != "bank":
            raise StyleLipSyncError("--bank-video goes with the bank engine; drop --checkpoint or --engine")
        mark("engine ready")
        job = self._job(Path(video), Path(audio), Path(output), opts)
        mark("inputs probed")
        for extra in opts.bank_video:
            check_file(Path(extra))
        inputs = EngineInputs(
            wave=job.wave,
            fps=job.fps,
            num_frames=len(job.src_idx),
            audio_frames=job.audio_frames,
            num_source=job.num_source,
            is_image=job.info.is_image,
            options=opts,
        )
        stages = progress if isinstance(progress, StageProgress) else None
        render_progress = rendering_progress(progress)
        sources = self._sources(job)
        collected = engine.collector(inputs)
        try:
            with timer("track"):
                track = self._track(job, sources, render_progress, timer, pipelined, collected, stages)
            mark("tracked")
            plan = self._plan(job, track, encoding_progress(progress, len(job.src_idx)))
            mark("planned")
            report = engine.render(
                inputs, plan, sources, collected, timer, callback, render_progress, pipelined
            )
        finally:
            sources.close()
            if collected is not None:
                collected.close()
        return GenerateResult(
            output_path=job.output,
            frames=len(job.src_idx),
            frames_with_face=report.frames_with_face,
            fps=job.fps,
            seconds=time.perf_counter() - start,
            width=plan.width,
            height=plan.height,
            source_frames=job.num_source,
            crop_path=job.crop_path,
            stage_seconds=dict(timer.seconds),
            engine=engine.name,
            warnings=list(report.warnings),
            details=dict(report.details),
        )

    # -- inputs ---------------------------------------------------------------------------------------

    def _job(self, video: Path, audio: Path, output: Path, opts: GenerateOptions) -> _Job:
        """Check the paths, read the audio, and lay out the output timeline."""
        check_file(video)
        check_file(audio)
        crop_path = Path(opts.crop_output) if opts.crop_output else None
        for out in [output] + ([crop_path] if crop_path else []):
            check_output(out, [video, audio], opts.overwrite)
        if crop_path is not None and crop_path.resolve() == output.resolve():
            raise OutputError(f"{crop_path}: the crop output must differ from the main output")
        info = probe(video)
        if not info.has_video:
            raise MediaError(f"{video}: has no video stream. Give a video or a photo of the face to dub.")
        native = PHOTO_FPS if info.is_image else (info.nominal_fps if info.is_vfr else info.fps)
        fps = float(opts.fps or native or PHOTO_FPS)
        wave = load_audio(audio, SAMPLE_RATE)
        audio_frames = num_video_frames(num_mel_frames(len(wave)), fps)
        if audio_frames < 1:
            raise MediaError(f"{audio}: holds less than one video frame of audio; give a file with speech")
        num_source = 1 if info.is_image else len(VideoReader(video, fps=fps))
        if opts.reference_frame is not None and opts.reference_frame >= num_source:
            raise StyleLipSyncError(
                f"--reference-frame {opts.reference_frame} is past the end of {video} "
                f"({num_source} frames at {fps:g} fps); choose 0 to {num_source - 1}"
            )
        num_out = audio_frames if opts.trim else max(audio_frames, num_source)
        src_idx = source_indices(num_out, num_source, opts.loop)
        return _Job(video, audio, output, crop_path, opts, info, fps, wave, audio_frames, num_source, src_idx)

    def _sources(self, job: _Job) -> SourceFrames:
        """Frame access for pass 2 (see `sources`): the still, a frame store, or a forward walk."""
        if job.info.is_image:
            return SourceFrames(job.video, job.fps, still=read_image(job.video))
        store = open_store(job.info.height, job.info.width) if needs_store(job.src_idx) else None
        return SourceFrames(job.video, job.fps, store=store)

    # -- pass 1 ---------------------------------------------------------------------------------------

    def _track(
        self,
        job: _Job,
        sources: SourceFrames,
        progress: Progress,
        timer: StageTimer,
        pipelined: bool,
        collector: FrameCollector | None = None,
        stages: StageProgress | None = None,
    ) -> FaceTrack:
        """Track the face over the source frames the timeline uses (filling the frame store, if any)."""
        bar = tqdm(total=job.needed, desc="tracking", unit="frame", disable=progress is not True, leave=False)

        def tracked(n: int) -> None:
            bar.update(n - bar.n)
            if stages is not None:
                stages.stage("tracking", n, job.needed)

        frames = self._pass1_frames(job, sources.store, timer)
        stream = prefetch(frames, PASS1_PREFETCH) if pipelined else frames
        try:
            track = track_face(
                stream,
                face_index=job.opts.face_index,
                bbox=job.opts.bbox,
                fps=job.fps,
                progress=tracked,
                on_frame=collector,
            )
        finally:
            stream.close()  # stops the decoding thread and closes the reader, also on errors
            bar.close()
        if not track.valid.any():
            hint = (
                " inside the --bbox box; check its coordinates (pixels of the first frame)"
                if job.opts.bbox
                else "; if the face is small, turned or partly hidden, point at it with --bbox X0,Y0,X1,Y1"
            )
            raise FaceNotFoundError(f"{job.video}: no face found in any frame{hint}")
        return track

    @staticmethod
    def _pass1_frames(
        job: _Job, store: FrameStore | None, timer: StageTimer
    ) -> Generator[np.ndarray, None, None]:
        """The first `job.needed` source frames, each also appended to the store when there is one."""
        if job.info.is_image:
            yield read_image(job.video)
            return
        with VideoReader(job.video, fps=job.fps) as reader:
            frames = islice(reader, job.needed)
            while True:
                start = time.perf_counter()
                frame = next(frames, None)
                if frame is not None and store is not None:
                    store.append(frame.image)
                timer.add("track: decode", time.perf_counter() - start)
                if frame is None:
                    return
                yield frame.image

    def _plan(self, job: _Job, track: FaceTrack, encoded: Callable[[int], None] | None = None) -> RenderPlan:
        """Crop transforms, the person's mask model and the reference frame, for pass 2; `encoded` hears the
        frames the output's encoder has taken."""
        out_audio, out_rate = self._output_audio(job)
        return RenderPlan(
            video=job.video,
            protect=[job.video, job.audio],
            output=job.output,
            crop_path=job.crop_path,
            fps=job.fps,
            width=job.info.width,
            height=job.info.height,
            src_idx=job.src_idx,
            track=track,
            transforms=crop_transforms(track, size=CROP_SIZE),
            masker=PoseMasker(face_model(track), size=CROP_SIZE),
            reference=self._reference(job, track),
            audio=out_audio,
            audio_rate=out_rate,
            batch_size=job.opts.batch_size,
            encoded=encoded,
        )

    @staticmethod
    def _reference(job: _Job, track: FaceTrack) -> int:
        """The identity reference: the requested frame (it must show the face) or the first with a face."""
        first = int(np.flatnonzero(track.valid)[0])
        ref = job.opts.reference_frame
        if ref is None:
            return first
        if not track.valid[ref]:
            raise FaceNotFoundError(
                f"{job.video}: frame {ref} (--reference-frame) has no tracked face; "
                f"choose a frame that shows it, e.g. {first}"
            )
        return ref

    @staticmethod
    def _output_audio(job: _Job) -> tuple[np.ndarray, int]:
        """The speech for the output file: at its own rate when AAC can carry it (not the model's 16 kHz)."""
        rate = probe(job.audio).sample_rate
        if rate == SAMPLE_RATE or rate not in AAC_RATES:
            return job.wave, SAMPLE_RATE
        return load_audio(job.audio, rate), rate


def rendering_progress(progress: Progress | StageProgress) -> Progress:
    """The engine's `progress` for a call's: a `StageProgress` hears it as its "rendering" stage; anything
    else passes through."""
    if not isinstance(progress, StageProgress):
        return progress
    stages = progress
    return lambda done, total: stages.stage("rendering", done, total)


def encoding_progress(progress: Progress | StageProgress, total: int) -> Callable[[int], None] | None:
    """The plan's `encoded` for a call's `progress`: a `StageProgress` hears the frames the encoder has
    taken, of `total`, as its "encoding" stage; None otherwise."""
    if not isinstance(progress, StageProgress):
        return None
    stages = progress
    return lambda done: stages.stage("encoding", done, total)


__all__ = ["LipSyncPipeline", "default_checkpoint", "load_model", "resolve_device"]
