"""`LipSyncPipeline`: dub a video or photo with new speech, streaming, with bounded memory.

Two passes over the input. Pass 1 decodes at the output frame rate and tracks the face, keeping only
landmarks (and, when the audio outlasts the video so frames must be revisited, the raw frames in an on-disk
store). Pass 2 walks the output timeline in chunks: crop + pose-aware mask → audio and face encoders → exact
streaming MaLS → decoder → composite in the crop → feathered paste-back → H.264/AAC encode. Frames without a
face are copied unchanged. The output file appears only when complete.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stylelipsync.audio import log_mel_spectrogram, mel_windows, num_video_frames, voice_activity
from stylelipsync.errors import CheckpointError, FaceNotFoundError, MediaError, OutputError
from stylelipsync.face.crop import crop_transforms, warp_landmarks, warp_to_crop
from stylelipsync.face.geometry import FaceModel
from stylelipsync.face.mask import PoseMasker, keep_mask
from stylelipsync.face.paste import paste_back
from stylelipsync.face.track import FaceTrack, track_face
from stylelipsync.media import VideoReader, VideoWriter, load_audio, probe, read_image
from stylelipsync.media.frame_store import FrameStore
from stylelipsync.models import StyleLipSync, load_official_checkpoint
from stylelipsync.pipelines.streaming import StreamingStyleMixer
from stylelipsync.pipelines.timeline import LoopMode, source_indices

CROP_SIZE = 256
"""Crops, masks and paste-back live at 256² (the spec's mask processing is defined there); the model may
run at a lower resolution, in which case its input is resized down and its output up."""

SAMPLE_RATE = 16000
SILENCE_LOG_MEL = -5.0
"""log10 of the mel floor (1e-5): what digital silence looks like to the audio encoder."""

GATE_RAMP_FRAMES = 3
"""Frames over which the silence gate fades, so the mouth closes and opens smoothly."""


@dataclass
class GenerateOptions:
    """Options of one `generate` call (CLI flags of the same names)."""

    batch_size: int = 8
    fps: float | None = None
    face_index: int | None = None
    bbox: tuple[int, ...] | None = None
    reference_frame: int = 0
    loop: LoopMode | str = LoopMode.PINGPONG
    trim: bool = True
    keep_silence: bool = False
    crop_output: Path | None = None
    overwrite: bool = False


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
    crop_path: Path | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """Human-readable one-paragraph summary for the CLI."""
        rate = self.frames / self.seconds if self.seconds > 0 else float("nan")
        no_face = self.frames - self.frames_with_face
        lines = [
            f"wrote {self.output_path} ({self.width}x{self.height}, "
            f"{self.frames} frames at {self.fps:g} fps, "
            f"{self.frames / self.fps:.2f} s)",
            f"faces found in {self.frames_with_face} of {self.frames} frames"
            + (f" ({no_face} passed through unchanged)" if no_face else ""),
            f"took {self.seconds:.1f} s ({rate:.1f} frames/s)",
        ]
        if self.crop_path is not None:
            lines.append(f"face crops in {self.crop_path}")
        return "\n".join(lines)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return device


def default_checkpoint() -> Path:
    """Directory of the model shipped inside the package."""
    return Path(__file__).resolve().parents[1] / "assets" / "default_model"


class _SourceFrames:
    """Source frames by index: from the on-disk store, or by walking a fresh decoder forwards."""

    def __init__(self, video: Path, fps: float, store: FrameStore | None, still: np.ndarray | None) -> None:
        self._store, self._still = store, still
        self._reader: Iterator[Any] | None = None
        self._video, self._fps = video, fps
        self._index, self._frame = -1, None

    def __getitem__(self, index: int) -> np.ndarray:
        if self._still is not None:
            return self._still
        if self._store is not None:
            return self._store[index]
        if self._reader is None:
            self._reader = iter(VideoReader(self._video, fps=self._fps))
        if index < self._index:
            raise RuntimeError("internal error: streamed source frames requested out of order")
        while self._index < index:
            frame = next(self._reader, None)
            if frame is None:
                break
            self._index, self._frame = self._index + 1, frame.image
        assert self._frame is not None
        return self._frame


class LipSyncPipeline:
    """Loaded model + everything around it. Call it to dub one video; reuse it for many."""

    def __init__(self, model: StyleLipSync, device: str | torch.device | None = "auto") -> None:
        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        w_avg: str | Path | None = None,
        device: str | torch.device | None = "auto",
    ) -> LipSyncPipeline:
        """Load a native model directory, an official `.pth` (+ `w_avg.pth`) or the shipped model (None)."""
        if path is None:
            path = default_checkpoint()
            if not (path / "config.json").is_file():
                raise CheckpointError(
                    f"no default model is shipped in this install ({path}); pass --checkpoint MODEL_DIR"
                )
        path = Path(path)
        if not path.exists():
            raise CheckpointError(
                f"checkpoint {path} does not exist; pass a model directory or an official .pth"
            )
        if path.is_dir():
            model = StyleLipSync.from_pretrained(path)
        else:
            model = load_official_checkpoint(path, w_avg=w_avg)
        return cls(model, device=device)

    # -- audio ------------------------------------------------------------------------------------------

    def _audio_features(self, wave: np.ndarray, num_frames: int, fps: float) -> torch.Tensor:
        mel = log_mel_spectrogram(wave, SAMPLE_RATE)
        normalise = getattr(self.model.config, "mel_normalization", "none")
        if normalise == "per_clip":
            mel = (mel - mel.mean(0, keepdim=True)) / mel.std(0, keepdim=True).clamp_min(1e-3)
        return mel_windows(mel, num_frames, fps)

    def _silence_styles(self) -> torch.Tensor:
        cfg = self.model.config
        window = torch.full((1, cfg.mel_steps, cfg.mel_bins), SILENCE_LOG_MEL, device=self.device)
        if getattr(cfg, "mel_normalization", "none") == "per_clip":
            window.zero_()
        return self.model.audio_styles(window)[0]

    @staticmethod
    def _speech_gate(
        wave: np.ndarray, num_frames: int, audio_frames: int, fps: float, keep_silence: bool
    ) -> np.ndarray:
        """Per-frame weight of the audio styles: 1 on speech, fading to 0 on silence and after the audio."""
        inside = np.arange(num_frames) < audio_frames
        if keep_silence:
            voiced = inside
        else:
            voiced = np.asarray(voice_activity(wave, SAMPLE_RATE, num_frames, fps), dtype=bool) & inside
        kernel = np.ones(2 * GATE_RAMP_FRAMES + 1) / (2 * GATE_RAMP_FRAMES + 1)
        padded = np.pad(voiced.astype(np.float64), GATE_RAMP_FRAMES, mode="edge")
        return np.convolve(padded, kernel, mode="valid")

    # -- main call -------------------------------------------------------------------------------------

    def __call__(
        self,
        video: str | Path,
        audio: str | Path,
        output: str | Path,
        options: GenerateOptions | None = None,
        progress: bool | Callable[[int, int], None] = False,
        **overrides: Any,
    ) -> GenerateResult:
        """Dub `video` (or a photo) with `audio` into `output`; see `GenerateOptions` for the options."""
        opts = options or GenerateOptions()
        for key, value in overrides.items():
            if not hasattr(opts, key):
                raise TypeError(f"unknown generate option {key!r}")
            setattr(opts, key, value)
        video, audio, output = Path(video), Path(audio), Path(output)
        crop_path = Path(opts.crop_output) if opts.crop_output else None
        self._check_paths(video, audio, output, crop_path, opts.overwrite)
        start = time.perf_counter()

        info = probe(video)
        if not (info.is_image or info.has_video):
            raise MediaError(f"{video} has no video stream; give a video or a photo of the face")
        native_fps = info.nominal_fps if info.is_vfr else info.fps
        fps = float(opts.fps or (25.0 if info.is_image else native_fps))
        wave = load_audio(audio, SAMPLE_RATE)
        if wave.size < SAMPLE_RATE // fps:
            raise MediaError(
                f"{audio} has no audio samples (or less than one frame); give a file with speech"
            )
        audio_frames = num_video_frames(1 + len(wave) // 160, fps)

        track, store, still, reference, num_source = self._analyse(
            video, info, fps, audio_frames, opts, progress
        )
        try:
            num_out = audio_frames if opts.trim else max(audio_frames, num_source)
            return self._render(
                video,
                wave,
                output,
                crop_path,
                fps,
                num_out,
                audio_frames,
                num_source,
                track,
                store,
                still,
                reference,
                opts,
                progress,
                start,
            )
        finally:
            if store is not None:
                store.close()

    def _check_paths(
        self, video: Path, audio: Path, output: Path, crop: Path | None, overwrite: bool
    ) -> None:
        for path, what in ((video, "video"), (audio, "audio")):
            if not path.is_file():
                raise MediaError(f"{what} file {path} does not exist")
        for out in [output] + ([crop] if crop else []):
            if out.resolve() in (video.resolve(), audio.resolve()):
                raise OutputError(f"output {out} is one of the inputs; choose another output path")
            if out.exists() and not overwrite:
                raise OutputError(f"output {out} already exists; pass --overwrite to replace it")
            if not out.parent.exists():
                raise OutputError(f"output folder {out.parent} does not exist; create it first")

    def _analyse(
        self,
        video: Path,
        info: Any,
        fps: float,
        audio_frames: int,
        opts: GenerateOptions,
        progress: bool | Callable[[int, int], None],
    ) -> tuple[FaceTrack, FrameStore | None, np.ndarray | None, np.ndarray, int]:
        """Pass 1: track the face; keep the reference frame and, if frames will be revisited, all frames."""
        still = read_image(video) if info.is_image else None
        estimate = 1 if still is not None else max(1, round(info.duration * fps))
        store: FrameStore | None = None
        if still is None and audio_frames > estimate - 5 and LoopMode(opts.loop) is not LoopMode.HOLD:
            store = FrameStore(info.height, info.width)
        kept: dict[int, np.ndarray] = {}

        def frames() -> Iterator[np.ndarray]:
            if still is not None:
                kept[0] = still
                yield still
                return
            bar = tqdm(
                total=estimate, desc="tracking", unit="frame", disable=progress is not True, leave=False
            )
            for frame in VideoReader(video, fps=fps):
                if store is not None:
                    store.append(frame.image)
                if frame.index == opts.reference_frame or frame.index == 0:
                    kept[frame.index] = frame.image
                bar.update(1)
                yield frame.image
            bar.close()

        try:
            track = track_face(frames(), face_index=opts.face_index, bbox=opts.bbox, fps=fps)
        except BaseException:
            if store is not None:
                store.close()
            raise
        num_source = len(track.valid)
        if num_source == 0:
            raise MediaError(f"{video} has no decodable frames")
        if not track.valid.any():
            if store is not None:
                store.close()
            hint = (
                " inside the --bbox box"
                if opts.bbox
                else "; if the face is small or turned, point at it with --bbox X0,Y0,X1,Y1"
            )
            raise FaceNotFoundError(f"no face found in any frame of {video}{hint}")
        ref_index = opts.reference_frame if opts.reference_frame < num_source else 0
        reference = kept.get(ref_index, kept[0])
        return track, store, still, reference, num_source

    @torch.no_grad()
    def _render(
        self,
        video: Path,
        wave: np.ndarray,
        output: Path,
        crop_path: Path | None,
        fps: float,
        num_out: int,
        audio_frames: int,
        num_source: int,
        track: FaceTrack,
        store: FrameStore | None,
        still: np.ndarray | None,
        reference: np.ndarray,
        opts: GenerateOptions,
        progress: bool | Callable[[int, int], None],
        start: float,
    ) -> GenerateResult:
        """Pass 2: encoders → streaming MaLS → decoder → composite → paste-back → encode."""
        model, _cfg, dev = self.model, self.model.config, self.device
        transforms = crop_transforms(track, size=CROP_SIZE)
        src_idx = source_indices(num_out, num_source, opts.loop)
        valid_src = np.flatnonzero(track.valid)
        ref_src = (
            opts.reference_frame
            if track.valid[min(opts.reference_frame, num_source - 1)]
            else int(valid_src[0])
        )
        ref_img = reference if ref_src == opts.reference_frame or still is not None else None
        if ref_img is None:
            ref_img = _SourceFrames(video, fps, store, still)[ref_src]
        ref_crop = warp_to_crop(ref_img, transforms[ref_src], CROP_SIZE)
        ref_styles = model.reference_styles(self._to_model(ref_crop[None]))[0]

        windows = self._audio_features(wave, num_out, fps).to(dev)
        gate = torch.as_tensor(
            self._speech_gate(wave, num_out, audio_frames, fps, opts.keep_silence),
            dtype=torch.float32,
            device=dev,
        )
        silence = self._silence_styles()
        mixer = StreamingStyleMixer(lambda a: model.mix_styles(a, ref_styles), num_out)
        sources = _SourceFrames(video, fps, store, still)
        masker = PoseMasker(FaceModel.from_landmarks(track.landmarks, track.valid), size=CROP_SIZE)
        masks_cache: dict[int, np.ndarray] = {}

        first = sources[int(src_idx[0])]
        height, width = first.shape[:2]
        total_samples = round(num_out / fps * SAMPLE_RATE)
        track_audio = np.zeros(total_samples, np.float32)
        track_audio[: min(total_samples, len(wave))] = wave[:total_samples]
        writer = VideoWriter(
            output, fps, width, height, audio=track_audio, sample_rate=SAMPLE_RATE, protect=[video]
        )
        crop_writer = (
            VideoWriter(
                crop_path,
                fps,
                CROP_SIZE,
                CROP_SIZE,
                audio=track_audio,
                sample_rate=SAMPLE_RATE,
                protect=[video],
            )
            if crop_path is not None
            else None
        )
        pending: deque[dict[str, Any]] = deque()
        with_face = 0
        bar = tqdm(total=num_out, desc="dubbing", unit="frame", disable=progress is not True)
        try:
            with writer, crop_writer if crop_writer is not None else _Null():
                for lo in range(0, num_out, opts.batch_size):
                    hi = min(num_out, lo + opts.batch_size)
                    items = []
                    for t in range(lo, hi):
                        s = int(src_idx[t])
                        frame = sources[s]
                        item: dict[str, Any] = {"frame": frame, "src": s, "valid": bool(track.valid[s])}
                        if item["valid"]:
                            if s not in masks_cache:
                                crop_points = warp_landmarks(track.landmarks[s], transforms[s])
                                masks_cache[s] = keep_mask(masker(crop_points))
                                if len(masks_cache) > 4 * opts.batch_size:
                                    masks_cache.pop(next(iter(masks_cache)))
                            crop = warp_to_crop(frame, transforms[s], CROP_SIZE)
                            item["crop"], item["keep"] = crop, masks_cache[s]
                        items.append(item)
                    faces = [it for it in items if it["valid"]]
                    if faces:
                        masked = np.stack([(it["crop"] * it["keep"][..., None]) for it in faces])
                        feats = model.face_features(self._to_model(masked))
                        for j, it in enumerate(faces):
                            it["features"] = [f[j : j + 1] for f in feats]
                    a = model.audio_styles(windows[lo:hi])
                    g = gate[lo:hi, None, None]
                    pending.extend(items)
                    styles = mixer.push(g * a + (1 - g) * silence)
                    with_face += self._flush(pending, styles, transforms, writer, crop_writer)
                    bar.update(hi - lo)
                    if callable(progress):
                        progress(hi, num_out)
        finally:
            bar.close()
        return GenerateResult(
            output_path=output,
            frames=num_out,
            frames_with_face=with_face,
            fps=fps,
            seconds=time.perf_counter() - start,
            width=width,
            height=height,
            crop_path=crop_path,
        )

    def _flush(
        self,
        pending: deque[dict[str, Any]],
        styles: torch.Tensor,
        transforms: np.ndarray,
        writer: Any,
        crop_writer: Any,
    ) -> int:
        """Decode, composite, paste back and write the oldest `len(styles)` pending frames."""
        if styles.shape[0] == 0:
            return 0
        items = [pending.popleft() for _ in range(styles.shape[0])]
        faces = [j for j, it in enumerate(items) if it["valid"]]
        if faces:
            feats = [
                torch.cat([items[j]["features"][k] for j in faces])
                for k in range(len(items[faces[0]]["features"]))
            ]
            x_hat = self.model.decode(styles[faces], feats)
            generated = self._from_model(x_hat)
            for j, gen in zip(faces, generated, strict=True):
                it = items[j]
                keep = it["keep"][..., None]
                it["composite"] = (
                    gen.astype(np.float32) * (1 - keep) + it["crop"].astype(np.float32) * keep
                ).astype(np.uint8)
        for it in items:
            if it["valid"]:
                out = paste_back(it["frame"], it["composite"], transforms[it["src"]], it["keep"])
                writer.write(out)
                if crop_writer is not None:
                    crop_writer.write(it["composite"])
            else:
                writer.write(it["frame"])
                if crop_writer is not None:
                    crop_writer.write(np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8))
        return len(faces)

    def _to_model(self, crops: np.ndarray) -> torch.Tensor:
        """uint8/float crops (N, 256, 256, 3) in 0..255 → (N, 3, res, res) in [-1, 1] on the device."""
        x = torch.as_tensor(np.ascontiguousarray(crops), dtype=torch.float32, device=self.device).permute(
            0, 3, 1, 2
        )
        res = self.model.config.resolution
        if res != x.shape[-1]:
            x = F.interpolate(x, size=(res, res), mode="area")
        return x / 127.5 - 1.0

    def _from_model(self, x_hat: torch.Tensor) -> np.ndarray:
        """(N, 3, res, res) in [-1, 1] → uint8 (N, 256, 256, 3), truncated like the official code."""
        x = ((x_hat.float() + 1) / 2).clamp(0, 1) * 255
        if x.shape[-1] != CROP_SIZE:
            x = F.interpolate(x, size=(CROP_SIZE, CROP_SIZE), mode="bicubic", align_corners=False).clamp(
                0, 255
            )
        return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["GenerateOptions", "GenerateResult", "LipSyncPipeline", "default_checkpoint"]
