"""`LipSyncPipeline` end to end on short real clips with a tiny random-weight model.

Checks the acceptance criteria of issue #4: output format, length and audio; pixels outside the mask and
frames without a face unchanged; no seam; chunked streaming equal to a whole-sequence pass; photo input;
loops, --no-trim, --fps and VFR input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from stylelipsync.audio import log_mel_spectrogram, mel_windows
from stylelipsync.face.crop import warp_to_crop
from stylelipsync.media import VideoReader, VideoWriter, load_audio, probe
from stylelipsync.models import StyleLipSync
from stylelipsync.pipelines import FrameOutput, GenerateResult, LipSyncPipeline
from stylelipsync.pipelines import plan as plan_module
from stylelipsync.pipelines.audio_drive import AudioDrive
from stylelipsync.pipelines.sources import needs_store
from stylelipsync.pipelines.timeline import source_indices

CLIP = "dreamtalk_M030_front_neutral_level1_001.mp4"  # 256², 25 fps, 94 frames, one frontal face
SPEECH = "sadtalker_answer.wav"  # 2.15 s, 16 kHz → 54 frames at 25 fps


# ----------------------------------------------------------------------------------------------- helpers


def write_wav(path: Path, wave: np.ndarray, rate: int) -> Path:
    """Write float mono audio as 16-bit PCM wav."""
    sf.write(str(path), np.asarray(wave, dtype=np.float32), rate, subtype="PCM_16")
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25) -> Path:
    """Write RGB frames as an H.264 MP4 (no audio)."""
    h, w = frames[0].shape[:2]
    with VideoWriter(path, fps, w, h, crf=12, preset="veryfast") as out:
        for frame in frames:
            out.write(frame)
    return path


def decode(path: Path, fps: float | None = None) -> list[np.ndarray]:
    """All frames of a video (resampled to `fps` if given)."""
    return [f.image for f in VideoReader(path, fps=fps)]


def to_model_input(crops: np.ndarray, resolution: int = 64) -> torch.Tensor:
    """(N, 256, 256, 3) pixels → (N, 3, R, R) in [-1, 1]: area resize, as spec §1.2 step 5."""
    x = torch.as_tensor(np.ascontiguousarray(crops), dtype=torch.float32).permute(0, 3, 1, 2)
    return F.interpolate(x, size=(resolution, resolution), mode="area") / 127.5 - 1.0


def frame_alpha(out: FrameOutput, shape: tuple[int, int]) -> np.ndarray:
    """The regenerated weight 1 − K of a frame, warped from the crop into frame pixels."""
    assert out.keep is not None and out.transform is not None
    h, w = shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(1.0 - out.keep, out.transform, (w, h), flags=flags, borderValue=(0.0,))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two equally shaped pixel sets."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def seam_energy(image: np.ndarray, alpha: np.ndarray, width: int = 3) -> float:
    """Mean squared luminance gradient in a band of ±`width` px around the mask border (α = 0.5)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    inside = (alpha > 0.5).astype(np.uint8)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    band = cv2.dilate(inside, kernel) != cv2.erode(inside, kernel)
    return float(np.mean((gx**2 + gy**2)[band]))


def xcorr_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> int:
    """Lag (samples) at which b best matches a (positive: b is late)."""
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[np.argmax(corr[lags])])


@dataclass
class Run:
    """One pipeline call: its result, the per-frame callback outputs and the frames handed to the writers."""

    result: GenerateResult
    outputs: list[FrameOutput]
    written: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def generated(self) -> torch.Tensor:
        """(T_face, 3, R, R) decoder outputs of the frames with a face."""
        return torch.stack([o.generated for o in self.outputs if o.generated is not None])


@contextmanager
def recording_writers(record: dict[str, list[np.ndarray]]) -> Iterator[None]:
    """Make the pipeline's VideoWriters also keep a copy of every frame they are given."""

    class Recorder(VideoWriter):
        def write(self, image: np.ndarray) -> None:
            record.setdefault(self.path.name, []).append(image.copy())
            super().write(image)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_module, "VideoWriter", Recorder)
        yield


def run(pipe: LipSyncPipeline, video: Path, audio: Path, output: Path, **opts: Any) -> Run:
    """Call the pipeline, collecting the callback outputs and the written frames."""
    outputs: list[FrameOutput] = []
    written: dict[str, list[np.ndarray]] = {}
    with recording_writers(written):
        result = pipe(video, audio, output, callback=outputs.append, **opts)
    return Run(result, outputs, written)


class InpaintStub(StyleLipSync):
    """A stand-in generator that fills the masked region smoothly from its surroundings: what a good
    generator produces at the mask border (skin continuing into the mask)."""

    def face_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [*super().face_features(x), x]

    def decode(
        self, styles: torch.Tensor, face_features: list[torch.Tensor], noise_mode: str = "const"
    ) -> Any:
        x = face_features[-1]
        known = (x.min(dim=1, keepdim=True).values > -0.9).float()
        known = -F.max_pool2d(-known, 7, stride=1, padding=3)  # away from the darkened soft border
        num, den = x * known, known
        for _ in range(12):
            num = F.avg_pool2d(num, 5, stride=1, padding=2, count_include_pad=False)
            den = F.avg_pool2d(den, 5, stride=1, padding=2, count_include_pad=False)
        fill = num / den.clamp_min(1e-3)
        return known * x + (1 - known) * fill


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run these tests' tiny model on one thread (restored afterwards).

    The test process cannot choose OMP_WAIT_POLICY (torch is already loaded), and on CPUs shared with other
    jobs two spinning OpenMP threads make the tiny model ~25× slower than one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="session")
def pipe(tiny_dir: Path) -> LipSyncPipeline:
    return LipSyncPipeline.from_pretrained(tiny_dir, device="cpu")


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    return media_dir / CLIP


@pytest.fixture(scope="session")
def clip_frames(clip: Path) -> list[np.ndarray]:
    return decode(clip, fps=25)


@pytest.fixture(scope="session")
def speech(media_dir: Path) -> Path:
    return media_dir / SPEECH


@pytest.fixture(scope="session")
def speech_short(tmp_path_factory: pytest.TempPathFactory, speech: Path) -> Path:
    """The first 0.64 s of the speech file (16 frames at 25 fps)."""
    wave = load_audio(speech, 16000)[:10240]
    return write_wav(tmp_path_factory.mktemp("audio") / "speech_short.wav", wave, 16000)


@pytest.fixture(scope="module")
def main_run(
    pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """The default call on a real clip longer than the audio, with a crop output."""
    out_dir = tmp_path_factory.mktemp("main")
    return run(pipe, clip, speech, out_dir / "dubbed.mp4", crop_output=out_dir / "crops.mp4", batch_size=8)


# ----------------------------------------------------------------------------------------------- output


def test_output_is_h264_at_input_size_and_rate_lasting_as_long_as_the_audio(
    main_run: Run, clip: Path, speech: Path
) -> None:
    out = main_run.result.output_path
    info, source, speech_info = probe(out), probe(clip), probe(speech)
    assert info.video_codec == "h264" and info.has_audio and info.audio_codec == "aac"
    assert (info.width, info.height) == (source.width, source.height)
    assert info.fps == pytest.approx(source.fps)
    assert abs(info.video_duration - speech_info.audio_duration) <= 1 / source.fps + 1e-6
    assert info.n_frames == main_run.result.frames == len(main_run.outputs) == 54
    assert [o.index for o in main_run.outputs] == list(range(54))
    assert main_run.result.frames_with_face == 54


def test_output_audio_is_the_input_speech_at_lag_zero(main_run: Run, speech: Path) -> None:
    original = load_audio(speech, 16000)
    dubbed = load_audio(main_run.result.output_path, 16000)
    assert abs(len(dubbed) - len(original)) <= 16000 / 25
    assert xcorr_lag(original, dubbed, max_lag=1600) == 0
    n = min(len(original), len(dubbed))
    assert np.corrcoef(original[:n], dubbed[:n])[0, 1] > 0.95


def test_pixels_outside_the_mask_are_unchanged(main_run: Run, clip_frames: list[np.ndarray]) -> None:
    """PSNR ≥ 40 dB outside the (dilated) regenerated region, after the H.264 round trip."""
    decoded = decode(main_run.result.output_path)
    worst = np.inf
    for out, frame in zip(main_run.outputs, decoded, strict=True):
        source = clip_frames[out.source_index]
        outside = cv2.dilate((frame_alpha(out, frame.shape[:2]) > 0).astype(np.uint8), np.ones((5, 5))) == 0
        worst = min(worst, psnr(frame[outside], source[outside]))
        written = main_run.written["dubbed.mp4"][out.index]
        assert np.array_equal(written[outside], source[outside])
    print(f"PSNR outside the mask, worst frame: {worst:.1f} dB")
    assert worst >= 40


def test_crop_output_holds_the_composites(main_run: Run) -> None:
    crop_path = main_run.result.crop_path
    assert crop_path is not None and crop_path.is_file()
    info = probe(crop_path)
    assert (info.width, info.height, info.n_frames) == (256, 256, 54)
    composites = [o.composite for o in main_run.outputs]
    assert all(c is not None and c.shape == (256, 256, 3) and c.dtype == np.uint8 for c in composites)
    assert np.array_equal(main_run.written["crops.mp4"][10], composites[10])


def test_summary_names_frames_faces_time_and_output(main_run: Run) -> None:
    text = main_run.result.summary()
    assert str(main_run.result.output_path) in text
    assert "54 frames at 25 fps" in text and "faces found in 54 of 54 frames" in text
    assert "frames/s" in text and "crops.mp4" in text
    assert {"track", "generator", "paste", "encode"} <= set(main_run.result.stage_seconds)


def test_existing_output_needs_overwrite_and_failed_runs_keep_it(
    pipe: LipSyncPipeline, main_run: Run, clip: Path, speech: Path
) -> None:
    from stylelipsync.errors import OutputError

    out = main_run.result.output_path
    before = out.read_bytes()
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        pipe(clip, speech, out)
    with pytest.raises(OutputError, match="is an input file"):
        pipe(clip, speech, clip, overwrite=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["crops.mp4", "dubbed.mp4"]


# ----------------------------------------------------------------------------------------------- seam


def seam_ratios(result: Run, source_frames: list[np.ndarray]) -> list[float]:
    """Per frame: gradient energy along the mask border in the output over that in the input."""
    ratios = []
    for out, frame in zip(result.outputs, decode(result.result.output_path), strict=True):
        alpha = frame_alpha(out, frame.shape[:2])
        ratios.append(seam_energy(frame, alpha) / seam_energy(source_frames[out.source_index], alpha))
    return ratios


def test_no_visible_seam(main_run: Run, clip_frames: list[np.ndarray]) -> None:
    """Gradient energy along the mask border stays within 1.5× of the input's, even around the random
    model's saturated blob (a hard, unfeathered paste of it measures 1.7–1.8)."""
    ratios = seam_ratios(main_run, clip_frames)
    print(f"seam gradient ratio (random model): median {np.median(ratios):.2f}, max {max(ratios):.2f}")
    assert max(ratios) <= 1.5


def test_no_visible_seam_with_a_plausible_generator(
    tiny_dir: Path, clip: Path, clip_frames: list[np.ndarray], speech_short: Path, tmp_path: Path
) -> None:
    """The same with a generator that continues the skin into the mask (`InpaintStub`), the case of a
    trained model: the border must not be more textured than the input's."""
    stub = InpaintStub.from_pretrained(tiny_dir)
    ratios = seam_ratios(
        run(LipSyncPipeline(stub, "cpu"), clip, speech_short, tmp_path / "stub.mp4"), clip_frames
    )
    print(f"seam gradient ratio (inpainting stub): median {np.median(ratios):.2f}, max {max(ratios):.2f}")
    assert max(ratios) <= 1.5


def test_a_failed_run_leaves_no_file_behind(
    pipe: LipSyncPipeline, clip: Path, speech_short: Path, tmp_path: Path
) -> None:
    def stop(out: FrameOutput) -> None:
        if out.index == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe(clip, speech_short, tmp_path / "out.mp4", crop_output=tmp_path / "crops.mp4", callback=stop)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- streaming


def test_chunked_streaming_equals_a_whole_sequence_pass(
    pipe: LipSyncPipeline, clip: Path, clip_frames: list[np.ndarray], speech_short: Path, tmp_path: Path
) -> None:
    """Batch 1, 3 and 8 give the decoder outputs of one whole-sequence pass (`model.infer`, and batch ≥ T)."""
    runs = {
        b: run(pipe, clip, speech_short, tmp_path / f"b{b}.mp4", batch_size=b, keep_silence=True)
        for b in (1, 3, 8, 64)
    }
    whole = runs[64].generated()
    assert whole.shape == (16, 3, 64, 64)
    diffs = {b: float((runs[b].generated() - whole).abs().max()) for b in (1, 3, 8)}

    outs = runs[64].outputs
    crops = np.stack([warp_to_crop(clip_frames[o.source_index], o.transform) for o in outs])  # type: ignore[arg-type]
    masked = crops * np.stack([o.keep for o in outs])[..., None]  # type: ignore[misc]
    ref_crop = crops[0]
    mel = mel_windows(log_mel_spectrogram(load_audio(speech_short, 16000)), 16, 25.0)
    reference = pipe.model.infer(to_model_input(masked), mel, to_model_input(ref_crop[None])[0], chunk_size=8)
    diffs["infer"] = float((reference - whole).abs().max())
    print(f"chunked vs whole-sequence max abs diff: {diffs}")
    assert max(diffs.values()) <= 1e-4


def test_mel_windows_per_chunk_equal_the_whole_sequence_windows(speech: Path) -> None:
    wave = load_audio(speech, 16000)
    for fps in (25.0, 30.0, 29.97, 24.0, 60.0):
        total = int(len(wave) / 16000 * fps) + 7  # a few frames past the audio, as with --no-trim
        whole = mel_windows(log_mel_spectrogram(wave), total, fps)
        drive = AudioDrive(wave, fps, total, total - 7, keep_silence=False)
        parts = torch.cat([drive.windows(lo, min(total, lo + 5)) for lo in range(0, total, 5)])
        assert torch.equal(parts, whole)
        assert drive.gate[-1] == 0 and drive.gate.shape == (total,)


def test_blockwise_log_mel_equals_one_pass(speech: Path) -> None:
    from stylelipsync.pipelines.audio_drive import blockwise_log_mel

    wave = load_audio(speech, 16000)
    whole = log_mel_spectrogram(wave)
    for block in (50, 97, 1000):
        assert torch.allclose(blockwise_log_mel(wave, block), whole, atol=1e-5, rtol=0)
    assert torch.allclose(
        blockwise_log_mel(wave[:-77], 64), log_mel_spectrogram(wave[:-77]), atol=1e-5, rtol=0
    )


def test_per_clip_mel_normalisation_follows_the_training_contract(speech: Path) -> None:
    """Windows (zero padding included) and the silent window (the quietest real window) standardised with the
    whole clip's band stats, as `training.dataset.normalize_mel` does with the stats `training.preprocess`
    stores."""
    from stylelipsync.audio.normalization import normalize_mel

    wave = load_audio(speech, 16000)
    mel = log_mel_spectrogram(wave)
    mean = mel.double().mean(0).float()
    std = mel.double().std(0, unbiased=False).clamp_min(1e-3).float()
    drive = AudioDrive(wave, 25.0, 60, 54, keep_silence=False, normalization="per_clip")
    expected = normalize_mel(mel_windows(mel, 60, 25.0), mean, std)
    assert torch.allclose(torch.cat([drive.windows(0, 32), drive.windows(32, 60)]), expected, atol=1e-5)
    loudness = torch.stack([mel[i : i + 20].mean() for i in range(mel.shape[0] - 19)])
    quietest = int(loudness.argmin())
    silent = normalize_mel(mel[quietest : quietest + 20][None], mean, std)
    assert torch.allclose(drive.silence_window(), silent, atol=1e-5)
    assert loudness[quietest] < loudness.median() - 1.0, "the quietest window must be a pause, not speech"
    assert torch.equal(AudioDrive(wave, 25.0, 60, 54, False).silence_window(), torch.full((1, 20, 80), -5.0))


# ----------------------------------------------------------------------------------------------- faceless


@pytest.fixture(scope="module")
def faceless_clip(clip_frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 grey frames, 12 real ones, 13 grey: the first frames have no face (gaps > 0.5 s stay faceless)."""
    grey = np.full_like(clip_frames[0], 118)
    frames = [grey] * 13 + clip_frames[:12] + [grey] * 13
    return write_video(tmp_path_factory.mktemp("faceless") / "faceless.mp4", frames)


def test_frames_without_a_face_pass_through_and_are_counted(
    pipe: LipSyncPipeline, faceless_clip: Path, speech: Path, tmp_path: Path
) -> None:
    audio = write_wav(tmp_path / "a.wav", load_audio(speech, 16000)[: 38 * 640], 16000)
    result = run(pipe, faceless_clip, audio, tmp_path / "out.mp4")
    source = decode(faceless_clip, fps=25)
    has_face = [o.has_face for o in result.outputs]
    assert has_face == [False] * 13 + [True] * 12 + [False] * 13
    assert result.result.frames_with_face == 12
    assert "26 without a face passed through unchanged" in result.result.summary()
    written = result.written["out.mp4"]
    decoded = decode(result.result.output_path)
    for t in [*range(13), *range(25, 38)]:
        assert np.array_equal(written[t], source[t])
        assert psnr(decoded[t], source[t]) >= 45  # H.264 round trip of the re-encoded output
        out = result.outputs[t]
        assert out.generated is None and out.composite is None and out.keep is None
    assert not np.array_equal(written[20], source[20])
    assert result.outputs[13].has_face  # the reference is the first frame with a face


# ----------------------------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def photo(clip_frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    cv2.imwrite(str(path), clip_frames[0][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def test_photo_input_animates_the_still_for_the_length_of_the_audio(
    pipe: LipSyncPipeline, photo: Path, speech_short: Path, tmp_path: Path
) -> None:
    result = run(pipe, photo, speech_short, tmp_path / "talking.mp4")
    info = probe(result.result.output_path)
    assert (info.width, info.height, info.fps, info.n_frames) == (256, 256, 25.0, 16)
    assert all(o.has_face and o.source_index == 0 for o in result.outputs)
    written = result.written["talking.mp4"]
    photo_pixels = decode(photo)[0]
    alpha = frame_alpha(result.outputs[0], photo_pixels.shape[:2])
    assert np.array_equal(written[5][alpha == 0], photo_pixels[alpha == 0])
    assert not np.array_equal(written[3], written[12])  # the mouth region follows the audio


def test_bbox_finds_a_face_the_detector_misses(
    pipe: LipSyncPipeline, photo: Path, speech_short: Path, tmp_path: Path
) -> None:
    """The no-face error suggests --bbox: with it, FaceMesh looks inside the box even when the detector
    finds nothing (simulated here by a detector that never finds a face)."""
    from stylelipsync.errors import FaceNotFoundError
    from stylelipsync.face import track as track_module

    class BlindDetector(track_module.FaceDetector):
        def detect(self, frame: np.ndarray) -> list:  # type: ignore[override]
            return []

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(track_module, "FaceDetector", BlindDetector)
        with pytest.raises(FaceNotFoundError, match=r"photo\.jpg: no face found in any frame.*--bbox"):
            pipe(photo, speech_short, tmp_path / "a.mp4")
        result = pipe(photo, speech_short, tmp_path / "b.mp4", bbox=(60, 40, 200, 220))
    assert result.frames_with_face == result.frames == 16


@pytest.fixture(scope="module")
def short_clip(clip_frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-frame video: shorter than the 16-frame audio."""
    return write_video(tmp_path_factory.mktemp("short") / "short.mp4", clip_frames[:6])


@pytest.mark.parametrize("loop", ["pingpong", "forward", "hold"])
def test_loops_extend_a_short_video_to_the_audio(
    pipe: LipSyncPipeline, short_clip: Path, speech_short: Path, tmp_path: Path, loop: str
) -> None:
    result = run(pipe, short_clip, speech_short, tmp_path / "out.mp4", loop=loop)
    expected = source_indices(16, 6, loop)
    assert [o.source_index for o in result.outputs] == expected.tolist()
    assert needs_store(expected) == (loop == "pingpong")
    source = decode(short_clip, fps=25)
    for out, written in zip(result.outputs, result.written["out.mp4"], strict=True):
        alpha = frame_alpha(out, written.shape[:2])
        assert np.array_equal(written[alpha == 0], source[out.source_index][alpha == 0])


def test_no_trim_keeps_the_whole_video_and_closes_the_mouth_after_the_audio(
    pipe: LipSyncPipeline, clip_frames: list[np.ndarray], speech_short: Path, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "v24.mp4", clip_frames[:24])
    result = run(pipe, video, speech_short, tmp_path / "out.mp4", trim=False)
    assert result.result.frames == 24 and probe(result.result.output_path).n_frames == 24
    assert [o.source_index for o in result.outputs] == list(range(24))
    audio = load_audio(result.result.output_path, 16000)
    assert len(audio) == pytest.approx(24 / 25 * 16000, abs=160)
    assert np.abs(audio[int(0.7 * 16000) :]).max() < 1e-3  # silence after the speech


def test_silence_gating_closes_the_mouth_on_silent_stretches(
    pipe: LipSyncPipeline, photo: Path, speech: Path, tmp_path: Path
) -> None:
    """Speech then quiet noise, on a photo (every frame has the same face features): with the gate the
    frames inside the pause get one constant (silent) style; with --keep-silence the noise drives them."""
    rng = np.random.default_rng(0)
    wave = np.concatenate([load_audio(speech, 16000)[:9600], 0.003 * rng.standard_normal(12800)])
    audio = write_wav(tmp_path / "speech_then_noise.wav", wave, 16000)
    gated = run(pipe, photo, audio, tmp_path / "gated.mp4").generated()
    free = run(pipe, photo, audio, tmp_path / "free.mp4", keep_silence=True).generated()
    pause = slice(25, 35)

    def spread(x: torch.Tensor) -> float:
        return float((x[pause] - x[pause].mean(0)).abs().max())

    print(
        f"spread of the generated frames inside the pause: gated {spread(gated):.2e}, free {spread(free):.2e}"
    )
    assert spread(gated) < 1e-5 < 1e-3 < spread(free)
    assert float((gated[5] - gated[30]).abs().max()) > 1e-3


def test_output_frame_rate_can_differ_from_the_input(
    pipe: LipSyncPipeline, clip: Path, speech_short: Path, tmp_path: Path
) -> None:
    result = run(pipe, clip, speech_short, tmp_path / "out30.mp4", fps=30)
    info = probe(result.result.output_path)
    assert info.fps == pytest.approx(30) and info.n_frames == 19 == result.result.frames
    assert abs(info.video_duration - 0.64) <= 1 / 30 + 1e-6


def test_variable_frame_rate_input_is_resampled_to_its_nominal_rate(
    pipe: LipSyncPipeline, media_dir: Path, speech_short: Path, tmp_path: Path
) -> None:
    vfr = media_dir / "vrt_face_1.mp4"
    source = probe(vfr)
    assert source.is_vfr and source.nominal_fps == 30
    result = run(pipe, vfr, speech_short, tmp_path / "out.mp4")
    info = probe(result.result.output_path)
    assert info.fps == pytest.approx(30) and not info.is_vfr
    assert info.n_frames == 19 and (info.width, info.height) == (source.width, source.height)
    assert result.result.frames_with_face == 19


# ----------------------------------------------------------------------------------------------- threads


def assert_same_runs(a: Run, b: Run) -> None:
    """Bit-identical written frames, decoder outputs and composites."""
    assert a.written.keys() == b.written.keys()
    for name in a.written:
        assert len(a.written[name]) == len(b.written[name])
        for x, y in zip(a.written[name], b.written[name], strict=True):
            assert np.array_equal(x, y)
    assert len(a.outputs) == len(b.outputs)
    for x, y in zip(a.outputs, b.outputs, strict=True):
        assert (x.index, x.source_index, x.has_face) == (y.index, y.source_index, y.has_face)
        if x.generated is not None:
            assert y.generated is not None and torch.equal(x.generated, y.generated)
            assert np.array_equal(x.composite, y.composite)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", ["short_clip", "photo"])
def test_pipelined_output_is_bit_identical_to_sequential(
    pipe: LipSyncPipeline, source: str, speech_short: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Decoding and encoding threads change where work runs, not what is computed: a ping-pong loop over a
    short clip (frame store, revisited frames) and a photo (one face, its features encoded once)."""
    video = request.getfixturevalue(source)
    opts: dict[str, Any] = {"batch_size": 5, "crop_output": tmp_path / "crops.mp4"}
    threaded = run(pipe, video, speech_short, tmp_path / "threaded.mp4", **opts)
    opts["crop_output"] = tmp_path / "crops_seq.mp4"
    sequential = run(pipe, video, speech_short, tmp_path / "sequential.mp4", pipelined=False, **opts)
    for r in (threaded, sequential):
        r.written = {k.replace("_seq", "").replace("sequential", "threaded"): v for k, v in r.written.items()}
    assert_same_runs(threaded, sequential)
    assert threaded.result.frames == 16
    stages = threaded.result.stage_seconds
    assert {"decode", "crop+mask", "face encoder", "generator", "paste", "encode"} <= set(stages)
    assert {"network waits for frames", "network waits for writer"} <= set(stages)


def test_cancelling_from_the_progress_callback_stops_all_threads(
    pipe: LipSyncPipeline, clip: Path, speech_short: Path, tmp_path: Path
) -> None:
    """The serve worker cancels a job by raising from its progress callback: the exception reaches the
    caller, no output (or temporary) file is left and the pipeline's threads have ended."""
    import threading

    class CancelledError(Exception):
        pass

    def progress(done: int, total: int) -> None:
        if done >= 8:
            raise CancelledError

    with pytest.raises(CancelledError):
        pipe(clip, speech_short, tmp_path / "out.mp4", batch_size=4, progress=progress)
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("stylelipsync-")]


def test_a_decoding_error_in_pass_two_reaches_the_caller(
    pipe: LipSyncPipeline, clip: Path, speech_short: Path, tmp_path: Path
) -> None:
    from stylelipsync.errors import MediaError
    from stylelipsync.pipelines import sources as sources_module

    real_getitem = sources_module.SourceFrames.__getitem__

    def failing(self: Any, index: int) -> np.ndarray:
        if index == 9:
            raise MediaError("clip.mp4: corrupt frame 9")
        return real_getitem(self, index)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources_module.SourceFrames, "__getitem__", failing)
        with pytest.raises(MediaError, match="corrupt frame 9"):
            pipe(clip, speech_short, tmp_path / "out.mp4", batch_size=4)
    assert list(tmp_path.iterdir()) == []


def test_prefetch_keeps_order_and_raises_where_the_iterable_failed() -> None:
    import threading

    from stylelipsync.pipelines.sources import prefetch

    assert list(prefetch(iter(range(50)), 3)) == list(range(50))

    def broken() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad frame")

    got = []
    with pytest.raises(ValueError, match="bad frame"):
        for item in prefetch(broken(), 2):
            got.append(item)
    assert got == [1, 2]

    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stream = prefetch(endless(), 4)
    assert next(stream) == 0
    stream.close()  # the consumer stops early: the thread ends and closes the generator it was walking
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "stylelipsync-prefetch"]
